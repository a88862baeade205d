"""Resumption: a call whose connection drops reconnects, on this server or another sharing the
Redis, and carries on where it was, with the agent file's "cut off" line instead of the greeting."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI

from bridges.loopback import serving, until
from opusagent.app import create_app
from opusagent.bridges.dial import DialError, dial
from opusagent.bridges.farend import FarEnd
from opusagent.bridges.farends import (
    AcsFarEnd,
    AudioCodesFarEnd,
    BrowserFarEnd,
    TelnyxFarEnd,
    TwilioMediaFarEnd,
)
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.sessions.store import SessionStore
from opusagent.testing import FakeTTS, FakeVAD, ScriptedSTT, Utterance

from .redis_server import RedisServer

POLICY = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0)
CUT_OFF = "Sorry, we got cut off. Let's pick up where we left off."


def served_app(settings: Settings, utterances: list[Utterance], **options: Any) -> FastAPI:
    """The real app, agents and session store, with instant fake speech stages."""
    app = create_app(settings, loaders={}, **options)
    voice = app.state.voice
    voice.vad, voice.stt = FakeVAD(), ScriptedSTT(utterances)
    voice.tts = FakeTTS(seconds_per_word=0.01, chunk_s=0.2)
    return app


def loud(seconds: float) -> np.ndarray:
    return np.random.default_rng(3).integers(-8000, 8000, int(seconds * 16000)).astype(np.int16)


def heard(call: Any, kind: str) -> list[str]:
    return [h.text for _, h in call.heard if h.kind == kind]


async def stored_state(store: SessionStore, call_id: str) -> str | None:
    record = await store.load(call_id)
    return record.state.state if record is not None else None


async def lose_the_line_in_identify(
    far_end: FarEnd, url: str, store: SessionStore, call_id: str
) -> None:
    """Say "I lost my card" (the fake STT hears it), wait until the agent is in `identify`
    and that is stored, then drop the line."""
    async with dial(far_end, url) as call:
        await call.wait_until_quiet(0.3, timeout=10)
        await call.silence(0.2)
        await call.play(loud(0.5), 16000)
        for _ in range(200):
            if await stored_state(store, call_id) == "identify":
                break
            await call.silence(0.05)
        await call.drop()
    assert await stored_state(store, call_id) == "identify"


async def test_a_dropped_browser_call_resumes_on_the_same_server() -> None:
    app = served_app(Settings(turn=POLICY), [Utterance(0.2, 0.7, "I lost my card")])
    store = app.state.sessions
    first = BrowserFarEnd(16000, call_id="drop-1")
    async with serving(app) as url:
        await lose_the_line_in_identify(first, f"{url}/browser", store, "drop-1")
        async with dial(first.resumed(), f"{url}/browser") as again:
            await until(lambda: bool(heard(again, "state")), within=5)
            await again.dtmf("4217#")
            await until(lambda: "verify" in heard(again, "state"), within=5)
        record = await store.load("drop-1")

    said = " ".join(heard(again, "agent_text"))
    assert said.startswith(CUT_OFF)
    assert "Thank you for calling Opus Bank" not in said
    assert heard(again, "state")[0] == "identify"
    assert record is not None and record.state.state == "verify"
    assert record.state.path[:2] == ["welcome", "identify"]
    assert record.state.path[-1] == "verify"


IDENTIFY_SAY = "I can help with that. Please say or key in the last four digits of your card."
IDENTIFY_REPROMPT = (
    "Sorry, I need the last four digits of your card, for example, four two one seven."
)


async def test_a_line_dropped_while_the_agent_speaks_resumes_in_the_same_state() -> None:
    app = served_app(Settings(turn=POLICY), [Utterance(0.2, 0.7, "I lost my card")])
    app.state.voice.tts = FakeTTS(seconds_per_word=0.15, chunk_s=0.1)  # identify's say: 2.4 s
    store = app.state.sessions
    first = BrowserFarEnd(16000, call_id="mid-reply")
    async with serving(app) as url:
        async with dial(first, f"{url}/browser") as call:
            await call.wait_until_quiet(0.3, timeout=15)
            await call.silence(0.2)
            await call.play(loud(0.5), 16000)
            spoke_until = call.now
            await until(lambda: call.agent_audio_until > spoke_until + 1.0, within=5)
            await call.drop()  # a second or so into identify's say
        dropped = await store.load("mid-reply")
        async with dial(first.resumed(), f"{url}/browser") as again:
            await until(lambda: IDENTIFY_REPROMPT in " ".join(heard(again, "agent_text")), 5)
            await again.dtmf("4217#")
            await until(lambda: "verify" in heard(again, "state"), within=5)
        record = await store.load("mid-reply")

    assert dropped is not None and not dropped.ended and dropped.state.state == "identify"
    cut = dropped.state.history[-1]
    assert (cut.speaker, cut.interrupted, cut.generated) == ("agent", True, IDENTIFY_SAY)
    assert 0 < len(cut.text) < len(IDENTIFY_SAY), "the record keeps the words heard before the drop"
    assert " ".join(heard(again, "agent_text")).startswith(CUT_OFF)
    assert record is not None and record.state.state == "verify"


async def test_a_call_resumes_on_a_second_server_sharing_redis(
    redis_server: RedisServer, tmp_path: Any
) -> None:
    settings = Settings(turn=POLICY, redis_url=redis_server.url)
    one = served_app(settings, [Utterance(0.2, 0.7, "I lost my card")])
    two = served_app(settings, [])
    first = TwilioMediaFarEnd()
    async with serving(one) as url_one, serving(two) as url_two:
        await lose_the_line_in_identify(
            first, f"{url_one}/twilio/media", one.state.sessions, first.call_sid
        )
        async with dial(first.resumed(), f"{url_two}/twilio/media") as again:
            await again.wait_until_quiet(0.5, timeout=10)
            await again.dtmf("4217#")
            await until(lambda: again.ended or again.result().agent_utterances() != [], within=5)
            for _ in range(100):
                if await stored_state(two.state.sessions, first.call_sid) == "verify":
                    break
                await again.silence(0.05)

    assert await stored_state(two.state.sessions, first.call_sid) == "verify"
    record = await two.state.sessions.load(first.call_sid)
    assert record is not None
    lines = [(line.speaker, line.text) for line in record.state.history]
    assert ("caller", "I lost my card") in lines, "what was said before the drop is kept"
    assert "resume in identify" in [entry.decision for entry in record.state.audit]


async def test_audiocodes_session_resume_continues_the_conversation(
    redis_server: RedisServer,
) -> None:
    settings = Settings(turn=POLICY, redis_url=redis_server.url)
    one = served_app(settings, [Utterance(0.2, 0.7, "I lost my card")])
    two = served_app(settings, [])
    first = AudioCodesFarEnd(["raw/lpcm16"])
    async with serving(one) as url_one, serving(two) as url_two:
        await lose_the_line_in_identify(
            first, f"{url_one}/audiocodes", one.state.sessions, first.conversation_id
        )
        async with dial(first.resumed(), f"{url_two}/audiocodes") as again:
            await again.wait_until_quiet(0.5, timeout=10)
            await again.dtmf("4217#")
            for _ in range(100):
                if await stored_state(two.state.sessions, first.conversation_id) == "verify":
                    break
                await again.silence(0.05)

    assert [h for _, h in again.heard if h.kind == "error"] == []
    assert await stored_state(two.state.sessions, first.conversation_id) == "verify"


async def test_an_unknown_audiocodes_resume_is_refused(redis_server: RedisServer) -> None:
    app = served_app(Settings(turn=POLICY, redis_url=redis_server.url), [])
    async with serving(app) as url:
        with pytest.raises(DialError, match="conversation not found"):
            async with dial(AudioCodesFarEnd(resume=True), f"{url}/audiocodes"):
                pass


BRIDGES: dict[str, tuple[str, Callable[[], tuple[FarEnd, str]]]] = {
    "twilio": ("/twilio/media", lambda: (f := TwilioMediaFarEnd(), f.call_sid)),
    "audiocodes": ("/audiocodes", lambda: (f := AudioCodesFarEnd(), f.conversation_id)),
    "acs": ("/acs", lambda: (f := AcsFarEnd(), f.subscription_id)),
    "telnyx": ("/telnyx", lambda: (f := TelnyxFarEnd(), f.call_control_id)),
    "browser": ("/browser", lambda: (BrowserFarEnd(16000, call_id="b-1"), "b-1")),
}


@pytest.mark.parametrize("bridge", sorted(BRIDGES))
async def test_each_audio_bridge_resumes_a_dropped_call(bridge: str) -> None:
    path, make = BRIDGES[bridge]
    far_end, call_id = make()
    app = served_app(Settings(turn=POLICY), [Utterance(0.2, 0.7, "I lost my card")])
    store = app.state.sessions
    async with serving(app) as url:
        await lose_the_line_in_identify(far_end, f"{url}{path}", store, call_id)
        async with dial(far_end.resumed(), f"{url}{path}") as again:
            await again.wait_until_quiet(0.5, timeout=10)
            await again.dtmf("4217#")
            async with asyncio.timeout(5):
                while await stored_state(store, call_id) != "verify":
                    await again.silence(0.05)
        record = await store.load(call_id)

    assert record is not None
    decisions = [entry.decision for entry in record.state.audit]
    assert decisions.count("start in welcome") == 1
    assert "resume in identify" in decisions
