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
from typing import Any

from rich.console import Console
from rich.table import Table

from harness import (
    CAPACITY_MARGIN_MS,
    add_load_arguments,
    added_ms,
    call_counts,
    capacity,
    espeak_speech,
    load_average,
    load_test,
    machine_line,
    number,
    write_json,
)
from opusagent.call.stages import Samples
from opusagent.loadtest.bench_server import BenchOptions, bench_server_process, free_port


async def measure(
    calls: int, args: argparse.Namespace, speech: tuple[Samples, int]
) -> dict[str, Any]:
    options = BenchOptions(silence_ms=args.silence_ms)
    with bench_server_process(options, port=free_port(), workers=args.workers) as server:
        return await load_test(server, calls, args, speech)


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
        out.add_row(
            str(n),
            f"{s['calls']['succeeded']}/{s['calls']['placed']}",
            f"{s['turns']['answered']}/{s['turns']['count']}",
            "/".join(number(lat[p]) for p in ("p50", "p95", "p99")),
            "/".join(number(added_ms(s, p, silence_ms)) for p in ("p50", "p95")),
            f"{number(gap['p99'])}/{number(gap['max'])}",
            str(s["outbound"]["underruns"]),
            number(server.get("cpu_s_per_call_minute"), 3),
            number(server.get("cpu_s_per_call_minute_above_idle"), 3),
            number(server.get("rss_per_call_mb"), 3),
            number(server.get("cpu_cores_mean"), 2),
            "-" if server.get("cpu_wait_share") is None else f"{server['cpu_wait_share']:.0%}",
            number(s["load_tool"]["loop_lag_ms"]["p99"], 1),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser)
    parser.add_argument("--workers", type=int, default=1, help="server processes (one per core)")
    args = parser.parse_args()
    counts = call_counts(args)
    console = Console(width=max(Console().width, 150))
    console.print(
        f"{machine_line()}; server workers: {args.workers}; each call lasts {args.duration:g} s",
        highlight=False,
    )
    speech = espeak_speech()
    rows: dict[int, dict[str, Any]] = {}
    for n in counts:
        console.print(f"{n} calls...", highlight=False)
        rows[n] = asyncio.run(measure(n, args, speech))
        console.print(table({n: rows[n]}, args.silence_ms))
    console.print(table(rows, args.silence_ms))
    best = capacity(rows)
    console.print(
        f"Capacity: {number(best)} calls (largest N with p95 within "
        f"+{CAPACITY_MARGIN_MS:.0f} ms of the 1-call p95 and no failure). "
        f"Load average now {load_average()}.",
        highlight=False,
    )
    if args.json is not None:
        write_json(args.json, {"workers": args.workers, "rows": rows})


if __name__ == "__main__":
    main()
