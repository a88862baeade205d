"""End of the caller's speech to the agent's first audio with the real offline stack.

The real server (`opusagent serve`, `opusagent.app` with the default settings: batched Silero VAD,
pocketsphinx with each state's grammar, the bank Finite State Agent `examples/agents/bank.yaml`,
Piper) runs as its own process, and the load tool (`opusagent.loadtest`, in this process) calls
it over the Twilio Media Streams bridge. Each call follows the bank agent's happy path: after the
greeting the caller says "I lost my card", then the card's last four digits, then a date of birth
(spoken by the offline synthesiser, Piper, trimmed to the voiced part), and hangs up once the
third answer is over. At 1 call the script is run `--rounds` times, one call after the other; at
N > 1 calls, N calls at once.

Printed per call count: turn latency (caller's last voiced frame -> first agent audio frame at the
caller) and that minus the turn policy's end-of-turn silence (`turn.end_of_turn_silence_ms`,
500 ms by default), p50/p95, and its median for each line of the script; the turns answered.
What remains after the silence: the VAD's lag, pocketsphinx's final result, understanding
(keywords and MiniLM embeddings), the agent's decision and tools, Piper's first chunk (or the
pre-rendered prompt from its cache), resampling, mu-law and the bridge. Run it from anywhere;
the server runs from the repository's root (the default `agents` folder).

    .venv/bin/python bench/e2e_offline.py [--calls 1,10] [--rounds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from harness import load_average, machine_line, number, write_json
from opusagent.call.stages import Samples
from opusagent.config import Settings
from opusagent.loadtest.bench_server import RunningServer, free_port, server_process
from opusagent.loadtest.plan import BRIDGE_PATHS, LoadPlan
from opusagent.loadtest.report import summarize
from opusagent.loadtest.runner import LoadRun
from opusagent.loadtest.speech import speech_from_text

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ("I lost my card", "four two one seven", "March third nineteen eighty")
"""The bank agent's happy path up to its question whether to block the card (a card ending in
4217, born 3 March 1980, is in `examples/agents/bank_tools.py`)."""
CALL_S = 120.0
"""An upper bound on one call; it ends after the script's last answer."""
QUIET_S = 1.0
"""Silence after which the agent's answer is over (its sentences follow each other closely)."""
READY_WITHIN_S = 300.0
"""The real server loads the VAD, recogniser, NLU model and synthesiser, and pre-renders."""


def server_command(port: int) -> list[str]:
    return [sys.executable, "-m", "opusagent", "serve", f"--port={port}", "--log-level=error"]


async def run_calls(
    server: RunningServer, calls: int, script: list[Samples], rate: int
) -> dict[str, Any]:
    plan = LoadPlan(
        bridge="twilio",
        url=f"{server.url}{BRIDGE_PATHS['twilio']}",
        calls=calls,
        ramp_s=max(1.0, calls / 5),
        duration_s=CALL_S,
        speech=script[0],
        then=tuple(script[1:]),
        rate=rate,
        turns=len(script),
        quiet_s=QUIET_S,
    )
    result = await LoadRun(plan, server_pid=server.pid).run()
    figures = summarize(result)
    figures["by_line_ms"] = [
        [
            o.turns[line].latency * 1000
            for o in result.outcomes
            if len(o.turns) > line and line not in o.early and o.turns[line].latency is not None
        ]
        for line in range(len(script))
    ]
    return figures


def pooled(runs: list[dict[str, Any]], silence_ms: int) -> dict[str, Any]:
    """The figures of `runs` (of one call count) together."""
    latencies = np.array([x for run in runs for x in run["latencies_ms"]], dtype=np.float64)
    turns = {k: sum(run["turns"][k] for run in runs) for k in ("count", "answered", "early")}
    figures: dict[str, Any] = {
        "calls": sum(run["calls"]["placed"] for run in runs),
        "succeeded": sum(run["calls"]["succeeded"] for run in runs),
        "turns": turns,
        "latency_ms": {},
        "after_silence_ms": {},
        "after_silence_p50_by_line_ms": [
            _median([x - silence_ms for run in runs for x in run["by_line_ms"][line]])
            for line in range(len(SCRIPT))
        ],
    }
    for p in (50, 95):
        value = float(np.percentile(latencies, p)) if latencies.size else None
        figures["latency_ms"][f"p{p}"] = value
        figures["after_silence_ms"][f"p{p}"] = None if value is None else value - silence_ms
    return figures


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def table(rows: dict[int, dict[str, Any]], silence_ms: int) -> Table:
    out = Table(title=f"Offline end to end, end of turn after {silence_ms} ms of silence")
    columns = ["calls at once", "calls ok", "turns", "latency p50/p95", "- silence p50/p95"]
    columns += [f"- silence p50, line {i}" for i in range(1, len(SCRIPT) + 1)]
    for column in columns:
        out.add_column(column, justify="right")
    for n, row in sorted(rows.items()):
        turns = row["turns"]
        early = f" ({turns['early']} early)" if turns["early"] else ""
        out.add_row(
            str(n),
            f"{row['succeeded']}/{row['calls']}",
            f"{turns['answered']}/{turns['count']}{early}",
            "/".join(number(row["latency_ms"][p]) for p in ("p50", "p95")),
            "/".join(number(row["after_silence_ms"][p]) for p in ("p50", "p95")),
            *(number(x) for x in row["after_silence_p50_by_line_ms"]),
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", default="1,10", help="comma-separated call counts")
    parser.add_argument("--rounds", type=int, default=3, help="calls one after the other at 1")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    os.chdir(ROOT)
    settings = Settings()
    silence_ms = settings.turn.end_of_turn_silence_ms
    console = Console(width=max(Console().width, 100))
    console.print(
        f"{machine_line()}; stt {settings.stt}, tts {settings.tts}, agent "
        f"{settings.default_agent}; end of turn {silence_ms} ms",
        highlight=False,
    )
    said = [speech_from_text(text, settings) for text in SCRIPT]
    script, rate = [samples for samples, _ in said], said[0][1]
    rows: dict[int, dict[str, Any]] = {}
    port = free_port()
    with server_process(
        server_command(port), port=port, ready_within_s=READY_WITHIN_S, ready_path="/ready"
    ) as server:
        for n in (int(n) for n in args.calls.split(",")):
            console.print(f"{n} calls...", highlight=False)
            rounds = args.rounds if n == 1 else 1
            runs = [asyncio.run(run_calls(server, n, script, rate)) for _ in range(rounds)]
            rows[n] = pooled(runs, silence_ms)
    console.print(table(rows, silence_ms))
    console.print(
        "Lines: " + "; ".join(f"{i}. {line!r}" for i, line in enumerate(SCRIPT, 1)), highlight=False
    )
    console.print(
        "After the silence: VAD lag, pocketsphinx final, NLU, the agent's decision and tools, "
        f"Piper's first chunk (or its cache), the bridge. Load average now {load_average()}.",
        highlight=False,
    )
    if args.json is not None:
        write_json(args.json, {"end_of_turn_silence_ms": silence_ms, "rows": rows})


if __name__ == "__main__":
    main()
