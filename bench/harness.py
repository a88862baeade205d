"""What the load benchmarks share (`capacity.py`, `compare_pipecat.py`, `e2e_offline.py`): their
options, the caller's speech, one load test against a running server, the capacity rule, and the
machine line and figures they print."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from machine import cpu_model
from opusagent.call.stages import Samples
from opusagent.loadtest.bench_server import RunningServer
from opusagent.loadtest.plan import BRIDGE_PATHS, LoadPlan
from opusagent.loadtest.report import summarize
from opusagent.loadtest.runner import LoadRun
from opusagent.loadtest.speech import speech_from_wav

SENTENCE = "I would like to check my balance please"
"""No comma: espeak-ng pauses about 190 ms at one, and the VAD would end the turn there."""
QUIET_S = 0.5
"""Silence after which the answer is over and the caller speaks again."""
IDLE_S = 3.0
"""The server is watched this long with no call, for its idle CPU use."""
CAPACITY_MARGIN_MS = 100.0
CALLS_PER_S = 25
"""How fast calls are placed unless `--ramp` says otherwise."""
QUICK_CALLS = [1, 5, 20]
QUICK_DURATION_S = 15.0
TWILIO_PATH = BRIDGE_PATHS["twilio"]


def add_load_arguments(parser: argparse.ArgumentParser, *, calls: str = "1,50,200,500") -> None:
    """The options every load benchmark takes."""
    parser.add_argument("--calls", default=calls, help="comma-separated call counts")
    parser.add_argument(
        "--quick", action="store_true", help=f"calls {QUICK_CALLS}, {QUICK_DURATION_S:g} s each"
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds each call lasts")
    parser.add_argument("--ramp", type=float, default=None, help="seconds to place the calls")
    parser.add_argument("--silence-ms", type=int, default=200, help="end-of-turn VAD silence")
    parser.add_argument("--json", type=Path, help="write every figure here")


def call_counts(args: argparse.Namespace) -> list[int]:
    """The call counts to measure; `--quick` also shortens each call."""
    if args.quick:
        args.duration = min(args.duration, QUICK_DURATION_S)
        return list(QUICK_CALLS)
    return [int(n) for n in args.calls.split(",")]


def espeak_speech(sentence: str = SENTENCE) -> tuple[Samples, int]:
    """`sentence` spoken by espeak-ng, trimmed to its voiced part."""
    if shutil.which("espeak-ng") is None:
        sys.exit(f"{Path(sys.argv[0]).name} needs espeak-ng (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "caller.wav"
        subprocess.run(["espeak-ng", "-w", str(path), sentence], check=True)
        return speech_from_wav(path)


def ramp_for(calls: int, ramp_s: float | None) -> float:
    """The ramp: as given, or the calls placed `CALLS_PER_S` a second (at least 1 s)."""
    return ramp_s if ramp_s is not None else max(1.0, calls / CALLS_PER_S)


async def load_test(
    server: RunningServer,
    calls: int,
    args: argparse.Namespace,
    speech: tuple[Samples, int],
    *,
    quiet_s: float = QUIET_S,
) -> dict[str, Any]:
    """`calls` Twilio calls into `server`, each saying `speech` again and again for
    `args.duration` s; every figure of the load test, with the server's idle CPU."""
    samples, rate = speech
    plan = LoadPlan(
        bridge="twilio",
        url=f"{server.url}{TWILIO_PATH}",
        calls=calls,
        ramp_s=ramp_for(calls, args.ramp),
        duration_s=args.duration,
        speech=samples,
        rate=rate,
        quiet_s=quiet_s,
    )
    result = await LoadRun(plan, server_pid=server.pid, idle_s=IDLE_S).run()
    return summarize(result)


def failed(summary: dict[str, Any]) -> bool:
    """A call failed, a turn went unanswered, or one was answered before the caller finished."""
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


def added_ms(summary: dict[str, Any], percentile: str, silence_ms: int) -> float | None:
    """Turn latency at `percentile` ("p50", ...) minus the end-of-turn silence."""
    value = summary["latency_ms"][percentile]
    return None if value is None else value - silence_ms


def number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def load_average() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def machine_line() -> str:
    """CPU, cores, Python and the load average now, for a benchmark's header."""
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"load average {load_average()}"
    )


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """`payload` as JSON, without each summary's list of every turn's latency."""

    def lean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: lean(v) for k, v in value.items() if k != "latencies_ms"}
        return value

    path.write_text(json.dumps(lean(payload), indent=2))
