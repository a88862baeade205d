"""Crash safety with real processes: kill -9 a server mid-call; a second server sharing the
Redis resumes the call when the provider reconnects, and nothing said before the crash is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest

from opusagent.bridges.dial import dial
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.sessions import RedisStore
from opusagent.sessions.records import CallRecords

from .redis_server import RedisServer, free_port

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]


class Server:
    """`opusagent serve` in its own process."""

    def __init__(self, redis_url: str, folder: Path) -> None:
        self.port = free_port()
        self.database = f"sqlite+aiosqlite:///{folder}/calls-{self.port}.db"
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",
            "OPUSAGENT_REDIS_URL": redis_url,
            "OPUSAGENT_DATABASE_URL": self.database,
            "OPUSAGENT_TTS_CACHE_DIR": str(folder / "tts"),
            "OPUSAGENT_NLU_EMBEDDINGS": "false",
        }
        command = [
            str(Path(sys.executable).parent / "opusagent"),
            "serve",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.url = f"ws://127.0.0.1:{self.port}/twilio/media"

    def wait_ready(self, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=2) as http:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, "the server exited"
                try:
                    if http.get("/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.2)
        raise AssertionError(f"server on {self.port} not ready within {within} s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()


@pytest.fixture
def servers(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    pair = (Server(redis_server.url, tmp_path), Server(redis_server.url, tmp_path))
    try:
        for server in pair:
            server.wait_ready()
        yield pair
    finally:
        for server in pair:
            server.stop()


async def state_of(store: RedisStore, call_id: str) -> str | None:
    record = await store.load(call_id)
    return record.state.state if record is not None else None


async def wait_for_state(store: RedisStore, call_id: str, state: str, within: float) -> None:
    async with asyncio.timeout(within):
        while await state_of(store, call_id) != state:  # noqa: ASYNC110 - another process's
            await asyncio.sleep(0.1)


@pytest.mark.slow
async def test_kill_9_mid_call_resumes_on_the_other_server(
    servers: tuple[Server, Server], redis_server: RedisServer, speak: Speak
) -> None:
    first, second = servers
    # espeak-ng's "I lost my card" scores near the grammar's word-score threshold; this is
    # well above it (voice/stt/sphinx_decoder.MIN_WORD_SCORE).
    words, rate = speak("my card was stolen")
    store = RedisStore(redis_server.url, 600)
    caller = TwilioMediaFarEnd()
    async with dial(caller, first.url) as call:
        await call.wait_until_quiet(1.0, timeout=30)
        await call.play(words, rate)
        await wait_for_state(store, caller.call_sid, "identify", within=20)
        first.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(call.wait_ended(), 10)
    async with dial(caller.resumed(), second.url) as again:
        await again.wait_until_quiet(1.0, timeout=30)
        await again.dtmf("4217#")
        await wait_for_state(store, caller.call_sid, "verify", within=20)
        await again.wait_until_quiet(1.0, timeout=30)
    await store.aclose()

    records = await CallRecords.open(second.database)
    try:
        async with asyncio.timeout(10):
            while (record := await records.get(caller.call_sid)) is None:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
    finally:
        await records.aclose()
    said = [(line.speaker, line.text or line.dtmf) for line in record.transcript]
    assert said[0][0] == "agent" and said[0][1].startswith("Thank you for calling Opus Bank")
    assert ("caller", "my card was stolen") in said, "what was said before the crash is kept"
    assert ("caller", "4217") in said
    assert record.path == ["welcome", "identify", "lookup_account", "verify"]
    resumed = [
        line.text for line in record.transcript if line.text.startswith("Sorry, we got cut off")
    ]
    assert resumed, "the agent said the cut-off line, not the greeting again"
