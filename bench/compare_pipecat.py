"""Our framework against Pipecat: the same load tool, caller and fake stages, one after the other.

For each call count N, our bench server (`opusagent.loadtest.bench_server`, one process) and then
a Pipecat 1.14 server (`bench/pipecat_server.py`, one process, run by the bench venv's python)
are started fresh, each as its own process, with the same end-of-turn VAD silence
(`--silence-ms`, 200), the same instant fake STT ("hello"), agent ("Okay, noted.") and TTS (a
0.5 s tone at 22 050 Hz). The load tool (`opusagent.loadtest`, in this process) places N Twilio
Media Streams calls into each; every call says an espeak-ng sentence in real time, waits for the
answer and 0.5 s of quiet, and says it again until its duration is over. With `--workers K`
(K > 1) our server is also measured with K processes (one per core).

Printed per N, for each server and as ours/Pipecat: turn latency p50/p95 (caller's last voiced
frame -> first agent audio frame), added latency p50/p95 (latency - silence), calls succeeded,
turns answered, outbound gaps, CPU-seconds per call-minute (and above the idle server's), RSS per
call. Then each server's capacity (the largest N whose p95 stays within +100 ms of its own 1-call
p95 with no failed call and no missed turn) and their ratio. `bench/README.md` lists what each
pipeline contains.

    scripts/bench-pipecat-env                      # once: builds .venv-bench
    .venv/bin/python bench/compare_pipecat.py --quick
    .venv/bin/python bench/compare_pipecat.py --calls 1,50,200,500 --workers 2 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness import (
    CAPACITY_MARGIN_MS,
    TWILIO_PATH,
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
from opusagent import __version__
from opusagent.call.stages import Samples
from opusagent.loadtest.bench_server import (
    HEARD,
    REPLY,
    SECONDS_PER_WORD,
    TTS_CHUNK_S,
    BenchOptions,
    RunningServer,
    bench_server_process,
    free_port,
    server_process,
)

ROOT = Path(__file__).resolve().parent.parent
PIPECAT_SERVER = ROOT / "bench" / "pipecat_server.py"
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


@dataclass(frozen=True, slots=True)
class Contender:
    name: str
    serve: Callable[[argparse.Namespace], contextlib.AbstractContextManager[RunningServer]]


def ours(workers: int) -> Contender:
    def serve(args: argparse.Namespace) -> contextlib.AbstractContextManager[RunningServer]:
        options = BenchOptions(silence_ms=args.silence_ms)
        return bench_server_process(options, port=free_port(), workers=workers)

    return Contender("ours" if workers == 1 else f"ours x{workers}", serve)


@contextlib.contextmanager
def pipecat_server(args: argparse.Namespace) -> Iterator[RunningServer]:
    port = free_port()
    command = [
        str(args.pipecat_python),
        str(PIPECAT_SERVER),
        f"--port={port}",
        f"--path={TWILIO_PATH}",
        f"--silence-ms={args.silence_ms}",
        f"--heard={HEARD}",
        f"--reply={REPLY}",
        f"--seconds-per-word={SECONDS_PER_WORD}",
        f"--chunk-s={TTS_CHUNK_S}",
    ]
    with server_process(command, port=port) as server:
        yield server


PIPECAT = Contender("Pipecat", pipecat_server)


def pipecat_version(python: Path) -> str:
    """The pipecat-ai version installed for `python`; exits when there is none."""
    if not python.is_file():
        raise SystemExit(f"{python} is missing: build it with scripts/bench-pipecat-env")
    answer = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('pipecat-ai'))"],
        capture_output=True,
        text=True,
        check=False,
    )
    if answer.returncode != 0:
        raise SystemExit(f"{python} has no pipecat-ai: run scripts/bench-pipecat-env")
    return answer.stdout.strip()


async def measure(
    contender: Contender, calls: int, args: argparse.Namespace, speech: tuple[Samples, int]
) -> dict[str, Any]:
    with contender.serve(args) as server:
        return await load_test(server, calls, args, speech)


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


FIGURES: list[tuple[str, Callable[[dict[str, Any], int], float | None], int]] = [
    ("latency p50 (ms)", lambda s, _: s["latency_ms"]["p50"], 0),
    ("latency p95 (ms)", lambda s, _: s["latency_ms"]["p95"], 0),
    ("added p50 (ms)", lambda s, silence: added_ms(s, "p50", silence), 0),
    ("added p95 (ms)", lambda s, silence: added_ms(s, "p95", silence), 0),
    ("calls succeeded", lambda s, _: s["calls"]["success_rate"], 3),
    ("turns answered", lambda s, _: _share(s["turns"]["answered"], s["turns"]["count"]), 3),
    ("gap p99 (ms)", lambda s, _: s["outbound"]["gap_ms"]["p99"], 0),
    ("gap max (ms)", lambda s, _: s["outbound"]["gap_ms"]["max"], 0),
    ("CPU-s / call-min", lambda s, _: (s["server"] or {}).get("cpu_s_per_call_minute"), 3),
    (
        "  above idle",
        lambda s, _: (s["server"] or {}).get("cpu_s_per_call_minute_above_idle"),
        3,
    ),
    ("RSS MB / call", lambda s, _: (s["server"] or {}).get("rss_per_call_mb"), 3),
    ("server CPU wait", lambda s, _: (s["server"] or {}).get("cpu_wait_share"), 2),
    ("load tool lag p99 (ms)", lambda s, _: s["load_tool"]["loop_lag_ms"]["p99"], 1),
]
"""Each printed figure: its label, how to read it from a summary, and its decimals."""


def ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or theirs == 0:
        return "-"
    return f"{mine / theirs:.2f}"


def count_table(
    calls: int, summaries: dict[str, dict[str, Any]], silence_ms: int, reference: str
) -> Table:
    """One call count: every figure for each contender, and ours/`reference` for each other."""
    out = Table(title=f"{calls} calls, {silence_ms} ms end of turn")
    out.add_column("figure")
    for name in summaries:
        out.add_column(name, justify="right")
    others = [name for name in summaries if name != reference]
    for name in others:
        out.add_column(f"{name} / {reference}", justify="right")
    for label, read, digits in FIGURES:
        values = {name: read(s, silence_ms) for name, s in summaries.items()}
        out.add_row(
            label,
            *(number(values[name], digits) for name in summaries),
            *(ratio(values[name], values[reference]) for name in others),
        )
    return out


def capacity_table(rows: dict[str, dict[int, dict[str, Any]]], reference: str) -> Table:
    out = Table(
        title=f"Capacity: largest N with p95 within +{CAPACITY_MARGIN_MS:.0f} ms of the 1-call "
        "p95, every call successful"
    )
    for column in ("server", "capacity (calls)", f"/ {reference}"):
        out.add_column(column, justify="right")
    theirs = capacity(rows[reference])
    for name, by_count in rows.items():
        best = capacity(by_count)
        mine = None if best is None else float(best)
        out.add_row(name, number(best), ratio(mine, None if theirs is None else float(theirs)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_load_arguments(parser)
    parser.add_argument(
        "--workers", type=int, default=1, help="also measure ours with K processes (K > 1)"
    )
    parser.add_argument(
        "--pipecat-python", type=Path, default=BENCH_PYTHON, help="the bench venv's python"
    )
    args = parser.parse_args()
    counts = call_counts(args)
    version = pipecat_version(args.pipecat_python)
    os.environ.setdefault("LOGURU_LEVEL", "WARNING")  # Pipecat's start-up banner and debug lines
    contenders = [ours(1), PIPECAT, *([ours(args.workers)] if args.workers > 1 else [])]
    console = Console(width=max(Console().width, 120))
    console.print(
        f"{machine_line()}; opusagent {__version__}, pipecat-ai {version}; "
        f"each call lasts {args.duration:g} s",
        highlight=False,
    )
    speech = espeak_speech()
    rows: dict[str, dict[int, dict[str, Any]]] = {c.name: {} for c in contenders}
    for n in counts:
        for contender in contenders:
            console.print(f"{contender.name}: {n} calls...", highlight=False)
            rows[contender.name][n] = asyncio.run(measure(contender, n, args, speech))
        at_n = {name: by_count[n] for name, by_count in rows.items()}
        console.print(count_table(n, at_n, args.silence_ms, PIPECAT.name))
    console.print(capacity_table(rows, PIPECAT.name))
    console.print(
        f"Capacity is bounded by the call counts measured ({', '.join(map(str, counts))}). "
        f"Load average now {load_average()}.",
        highlight=False,
    )
    if args.json is not None:
        versions = {"opusagent": __version__, "pipecat_ai": version}
        write_json(args.json, {**versions, "workers": args.workers, "rows": rows})


if __name__ == "__main__":
    main()
