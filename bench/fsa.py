"""Finite State Agent controller speed: one decided turn of the bank card agent.

    .venv/bin/python bench/fsa.py
    .venv/bin/python bench/fsa.py --conversations 200 --embeddings

Each conversation is the bank agent's happy path as text turns (start, "I lost my card",
"four two one seven", "march third nineteen eighty", "yes"): understanding, checking every
transition, running its tools, rendering its templates and writing the audit entry. The figure
is wall-clock ms per decided turn (`Controller.decide`, `perf_counter`), p50/p95/max over every
turn after one untimed conversation. `--embeddings` adds MiniLM sentence embeddings to intent
matching (the server's default). Understanding runs in a worker thread, as in a call.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import time
from pathlib import Path

from opusagent.agent.fsa.catalog import build_controller
from opusagent.agent.fsa.controller import Controller, TurnInput
from opusagent.agent.fsa.loader import load_agent
from opusagent.agent.nlu.embeddings import MiniLMEmbedder
from opusagent.agent.tools.registry import ToolContext
from opusagent.call.stages import TurnKind

AGENT = Path(__file__).resolve().parent.parent / "examples" / "agents" / "bank.yaml"
SAID = ["I lost my card", "four two one seven", "march third nineteen eighty", "yes"]


async def conversation(controller: Controller, timings: list[float] | None) -> str:
    context = ToolContext(call_id="bench", slots={}, context={})
    state = controller.new_state()
    turns = [TurnInput(TurnKind.START), *(TurnInput(TurnKind.SPEECH, text) for text in SAID)]
    for turn in turns:
        started = time.perf_counter()
        outcome = await controller.decide(state, turn, context)
        if timings is not None:
            timings.append((time.perf_counter() - started) * 1000)
        state = outcome.state
    return state.state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--embeddings", action="store_true")
    args = parser.parse_args()
    embedder = MiniLMEmbedder() if args.embeddings else None
    agent = load_agent(AGENT)
    controller = build_controller(agent, embedder=embedder, today=datetime.date(2026, 11, 21))
    if asyncio.run(conversation(controller, None)) != "card_replaced":
        raise SystemExit("the warm-up conversation did not reach card_replaced")
    timings: list[float] = []
    for _ in range(args.conversations):
        asyncio.run(conversation(controller, timings))
    ordered = sorted(timings)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    print(
        f"bank_card, {args.conversations} conversations, {len(timings)} turns, "
        f"embeddings {'on' if embedder else 'off'}, "
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}"
    )
    print(
        f"ms per decided turn: p50 {statistics.median(ordered):.2f}  p95 {p95:.2f}  "
        f"max {ordered[-1]:.2f}"
    )


if __name__ == "__main__":
    main()
