"""Framework capacity: our server with instant fake stages under N concurrent calls.

For each N, a fresh bench server (`opusagent.loadtest.bench_server`: the real app, Twilio
Media Streams bridge, `Call` and batched Silero VAD; an STT that hears "hello" at once, an agent
that answers every turn at once, `FakeTTS`; end of turn = `--silence-ms` of VAD silence) runs as
its own process, and the load tool (`opusagent.loadtest`, in this process) places N Twilio calls
over the ramp. Each call says an espeak-ng sentence (trimmed to its voiced part) in real time,
waits for the answer to finish, and says it again until its duration is over.

Printed per N: turn latency (caller's last voiced frame -> first agent audio frame at the
caller), and the added latency over the silence floor (latency - silence), p50/p95; success;
outbound gaps; the server's CPU-seconds per call-minute (CPU time of the server process and its
workers over the test, divided by the minutes of calls) and RSS per call (memory at the most
calls minus memory before the first call, over the calls); the load tool's own event-loop lag
(when it is high the load tool, not the server, is the bottleneck). Then the capacity: the
largest N whose p95 stays within +100 ms of the 1-call p95 with no failed call and no missed
turn.

    .venv/bin/python bench/capacity.py --quick
    .venv/bin/python bench/capacity.py --calls 1,50,200,500 --duration 60 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from machine import cpu_model
from opusagent.loadtest.bench_server import BenchOptions, bench_server_process, free_port
from opusagent.loadtest.plan import LoadPlan
from opusagent.loadtest.report import summarize
from opusagent.loadtest.runner import LoadRun
from opusagent.loadtest.speech import speech_from_wav

SENTENCE = "I would like to check my balance please"
"""No comma: espeak-ng pauses about 190 ms at one, and the VAD would end the turn there."""
QUIET_S = 0.5
"""Silence after which the answer is over and the caller speaks again."""
IDLE_S = 3.0
CAPACITY_MARGIN_MS = 100.0
QUICK_CALLS = [1, 5, 20]


def caller_speech() -> tuple[Any, int]:
    if shutil.which("espeak-ng") is None:
        sys.exit("bench/capacity.py needs espeak-ng (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "caller.wav"
        subprocess.run(["espeak-ng", "-w", str(path), SENTENCE], check=True)
        return speech_from_wav(path)


def ramp_for(calls: int, args: argparse.Namespace) -> float:
    """The ramp: as given, or the calls placed 25 a second (at least 1 s)."""
    return args.ramp if args.ramp is not None else max(1.0, calls / 25)


async def measure(calls: int, args: argparse.Namespace, speech: Any, rate: int) -> dict[str, Any]:
    options = BenchOptions(silence_ms=args.silence_ms)
    with bench_server_process(options, port=free_port(), workers=args.workers) as server:
        plan = LoadPlan(
            bridge="twilio",
            url=f"{server.url}/twilio/media",
            calls=calls,
            ramp_s=ramp_for(calls, args),
            duration_s=args.duration,
            speech=speech,
            rate=rate,
            quiet_s=QUIET_S,
        )
        result = await LoadRun(plan, server_pid=server.pid, idle_s=IDLE_S).run()
    return summarize(result)


def failed(summary: dict[str, Any]) -> bool:
    turns = summary["turns"]
    return summary["calls"]["success_rate"] < 1.0 or turns["missed"] > 0 or turns["early"] > 0


def capacity(rows: dict[int, dict[str, Any]]) -> int | None:
    """The largest N within +100 ms of the 1-call p95 with no failure (None without 1 call)."""
    if 1 not in rows or rows[1]["latency_ms"]["p95"] is None:
        return None
    limit = rows[1]["latency_ms"]["p95"] + CAPACITY_MARGIN_MS
    good = [
        n
        for n, s in rows.items()
        if not failed(s) and s["latency_ms"]["p95"] is not None and s["latency_ms"]["p95"] <= limit
    ]
    return max(good, default=None)


def _f(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(rows: dict[int, dict[str, Any]], silence_ms: int) -> Table:
    out = Table(title=f"Capacity: instant fake stages, Silero VAD, {silence_ms} ms end of turn")
    for column in (
        "calls",
        "ok",
        "turns",
        "latency p50/p95/p99",
        "added p50/p95",
        "gap p99/max",
        "underruns",
        "CPU-s/call-min",
        "above idle",
        "RSS MB/call",
        "cores used",
        "CPU wait",
        "tool lag p99",
    ):
        out.add_column(column, justify="right")
    for n, s in sorted(rows.items()):
        lat, gap, server = s["latency_ms"], s["outbound"]["gap_ms"], s["server"] or {}
        added = [None if lat[p] is None else lat[p] - silence_ms for p in ("p50", "p95")]
        out.add_row(
            str(n),
            f"{s['calls']['succeeded']}/{s['calls']['placed']}",
            f"{s['turns']['answered']}/{s['turns']['count']}",
            "/".join(_f(lat[p]) for p in ("p50", "p95", "p99")),
            "/".join(_f(a) for a in added),
            f"{_f(gap['p99'])}/{_f(gap['max'])}",
            str(s["outbound"]["underruns"]),
            _f(server.get("cpu_s_per_call_minute"), 3),
            _f(server.get("cpu_s_per_call_minute_above_idle"), 3),
            _f(server.get("rss_per_call_mb"), 3),
            _f(server.get("cpu_cores_mean"), 2),
            "-" if server.get("cpu_wait_share") is None else f"{server['cpu_wait_share']:.0%}",
            _f(s["load_tool"]["loop_lag_ms"]["p99"], 1),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calls", default="1,50,200,500", help="comma-separated call counts (1 is the baseline)"
    )
    parser.add_argument("--quick", action="store_true", help=f"calls {QUICK_CALLS}, 15 s each")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds each call lasts")
    parser.add_argument("--ramp", type=float, default=None, help="seconds to place the calls")
    parser.add_argument("--silence-ms", type=int, default=200, help="end-of-turn VAD silence")
    parser.add_argument("--workers", type=int, default=1, help="server processes (one per core)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    counts = QUICK_CALLS if args.quick else [int(n) for n in args.calls.split(",")]
    if args.quick:
        args.duration = min(args.duration, 15.0)
    console = Console(width=max(Console().width, 150))
    console.print(
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {', '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"server workers: {args.workers}; each call lasts {args.duration:g} s",
        highlight=False,
    )
    speech, rate = caller_speech()
    rows: dict[int, dict[str, Any]] = {}
    for n in counts:
        console.print(f"{n} calls...", highlight=False)
        rows[n] = asyncio.run(measure(n, args, speech, rate))
        console.print(table({n: rows[n]}, args.silence_ms))
    console.print(table(rows, args.silence_ms))
    best = capacity(rows)
    console.print(
        f"Capacity: {best if best is not None else '-'} calls (largest N with p95 within "
        f"+{CAPACITY_MARGIN_MS:.0f} ms of the 1-call p95 and no failure). "
        f"Load average now {', '.join(f'{x:.1f}' for x in os.getloadavg())}.",
        highlight=False,
    )
    if args.json is not None:
        for summary in rows.values():
            summary.pop("latencies_ms")
        args.json.write_text(json.dumps({"workers": args.workers, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
