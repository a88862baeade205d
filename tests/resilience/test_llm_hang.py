"""The bank agent's LLM states with an LLM endpoint that never answers (a loopback server that
takes the request and says nothing): the caller is never left in silence.

When the LLM's own timeout (the bank file allows 4 s) is shorter than the call's bound on the
agent, the rules' words are said instead of the model's; when the call's bound is shorter, the
agent's fallback line is; either way the next turn works."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import numpy as np
import pytest
from fastapi import FastAPI

from bridges.loopback import serving, until
from opusagent.app import create_app
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farends import BrowserFarEnd
from opusagent.call.fallback import DEFAULT_FALLBACK_SAY
from opusagent.call.stages import Samples
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.testing import FakeTTS, FakeVAD, ScriptedSTT, Utterance

GREETING = "Thank you for calling Opus Bank."
WELCOME = "I can block a lost or stolen card and send you a new one. How can I help you today?"
REPROMPT = "You can say, for example, I lost my card."
IDENTIFY = "I can help with that. Please say or key in the last four digits of your card."


@contextlib.asynccontextmanager
async def silent_llm() -> AsyncIterator[str]:
    """An HTTP server on loopback that reads every request and never answers; its base URL."""
    held: list[asyncio.StreamWriter] = []

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(take, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def bank_app(llm_url: str, policy: TurnPolicy, utterances: list[Utterance]) -> FastAPI:
    settings = Settings(turn=policy, llm_base_url=llm_url, llm_model="any")
    app = create_app(settings, loaders={})
    voice = app.state.voice
    voice.vad, voice.stt = FakeVAD(), ScriptedSTT(utterances)
    voice.tts = FakeTTS(seconds_per_word=0.01, chunk_s=0.2)
    return app


def said(call: DialSession) -> list[str]:
    return [h.text.strip() for _, h in call.heard if h.kind == "agent_text"]


def spoken(call: DialSession) -> str:
    return " ".join(said(call))


def loud(seconds: float) -> Samples:
    return np.random.default_rng(5).integers(-8000, 8000, int(seconds * 16000)).astype(np.int16)


async def test_a_call_bound_shorter_than_the_llm_timeout_says_the_fallback_line() -> None:
    policy = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0, agent_timeout_ms=1000)
    async with silent_llm() as llm_url:
        app = bank_app(llm_url, policy, [])
        async with serving(app) as url, dial(BrowserFarEnd(16000), f"{url}/browser") as call:
            await until(lambda: DEFAULT_FALLBACK_SAY in said(call), within=5)
            await call.dtmf("4217#")
            await until(lambda: REPROMPT in spoken(call), within=5)
            await call.hangup()

    assert said(call)[0] == GREETING, "what the rules said before the model hung is heard"
    assert said(call)[1] == DEFAULT_FALLBACK_SAY, "then the fallback line, not silence"
    metrics = app.state.telemetry.metrics.exposition().decode()
    assert 'opusagent_stage_failures_total{kind="timeout",stage="agent"} 1.0' in metrics


@pytest.mark.slow
async def test_the_llm_timeout_inside_the_call_bound_says_the_rules_words() -> None:
    policy = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0)
    async with silent_llm() as llm_url:
        app = bank_app(llm_url, policy, [Utterance(0.3, 0.8, "I lost my card")])
        async with serving(app) as url, dial(BrowserFarEnd(16000), f"{url}/browser") as call:
            await until(lambda: WELCOME in spoken(call), within=8)
            await call.silence(0.3)
            await call.play(loud(0.5), 16000)
            await until(lambda: IDENTIFY in spoken(call), within=10)
            await call.hangup()

    assert spoken(call).startswith(f"{GREETING} {WELCOME}")
    assert DEFAULT_FALLBACK_SAY not in spoken(call)
