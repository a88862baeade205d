"""Session store speed: saving and loading one call's record after each turn.

    .venv/bin/python bench/sessions.py [--turns 500]

The record is the bank agent's state after its happy path (five turns of audit and history,
about 20 kB of JSON). Each figure is wall-clock ms per operation (`perf_counter`), p50/p95/max
over `--turns` saves (each with the version the previous returned, as a call's writer does) and
as many loads, for the memory store and for Redis (a throwaway `redis-server` on a free loopback
port, no persistence). Needs redis-server on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import shutil
import socket
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

from opusagent.agent.fsa.catalog import build_controller
from opusagent.agent.fsa.controller import TurnInput
from opusagent.agent.fsa.loader import load_agent
from opusagent.agent.fsa.state import AgentState
from opusagent.call.stages import TurnKind
from opusagent.sessions import MemoryStore, RedisStore, SessionRecord, SessionStore

AGENT = Path(__file__).resolve().parent.parent / "examples" / "agents" / "bank.yaml"
SAID = ["I lost my card", "four two one seven", "march third nineteen eighty", "yes"]


async def bank_state() -> AgentState:
    controller = build_controller(load_agent(AGENT), today=datetime.date(2026, 11, 21))
    state = controller.new_state()
    for turn in [TurnInput(TurnKind.START), *(TurnInput(TurnKind.SPEECH, t) for t in SAID)]:
        state = (await controller.decide(state, turn)).state
    return state


def figures(label: str, timings: list[float]) -> str:
    ordered = sorted(timings)
    p95 = ordered[round(0.95 * (len(ordered) - 1))]
    median = statistics.median(ordered)
    return f"{label:<14} p50 {median:6.3f}  p95 {p95:6.3f}  max {ordered[-1]:6.3f}"


async def measure(
    store: SessionStore, state: AgentState, turns: int
) -> tuple[list[float], list[float]]:
    now = datetime.datetime.now(datetime.UTC)
    record = SessionRecord(
        call_id="bench",
        agent="bank_card",
        bridge="twilio",
        media={},
        state=state,
        created_at=now,
        updated_at=now,
    )
    saves, loads = [], []
    for _ in range(turns):
        started = time.perf_counter()
        record = await store.save(record)
        saves.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await store.load("bench")
        loads.append((time.perf_counter() - started) * 1000)
    return saves, loads


async def run(turns: int, redis_url: str | None) -> None:
    state = await bank_state()
    size = len(state.model_dump_json())
    print(f"record: bank_card after its happy path, {size / 1000:.1f} kB of JSON; {turns} turns")
    saves, loads = await measure(MemoryStore(3600), state, turns)
    print(figures("memory save", saves))
    print(figures("memory load", loads))
    if redis_url is None:
        print("redis-server not found: Redis skipped")
        return
    store = RedisStore(redis_url, 3600)
    saves, loads = await measure(store, state, turns)
    await store.aclose()
    print(figures("redis save", saves))
    print(figures("redis load", loads))


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server on a free loopback port; None when it is not installed."""
    if shutil.which("redis-server") is None:
        yield None
        return
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(["redis-server", *options], stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=500)
    with redis_server() as url:
        asyncio.run(run(parser.parse_args().turns, url))
