"""The served app: every bridge mounted, each call gets the agent it names, over real sockets."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI
from typer.testing import CliRunner

from opusagent.app import create_app
from opusagent.bridges.dial import dial
from opusagent.bridges.farends import BrowserFarEnd, TwilioMediaFarEnd
from opusagent.call.turn_policy import TurnPolicy
from opusagent.cli import app as cli
from opusagent.config import Settings
from opusagent.serving import call_context
from opusagent.testing import FakeTTS, FakeVAD, ScriptedSTT, Utterance
from opusagent.voice.offline import synthesize

from .loopback import serving, until

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]
POLICY = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0)


def served_app(utterances: list[Utterance], **settings: Any) -> FastAPI:
    """The real app and agents, with instant fake speech stages in place of the models
    (`settings`: more `Settings` fields)."""
    app = create_app(Settings(turn=POLICY, **settings), loaders={})
    voice = app.state.voice
    voice.vad, voice.stt = FakeVAD(), ScriptedSTT(utterances)
    voice.tts = FakeTTS(seconds_per_word=0.01, chunk_s=0.2)
    return app


def states(heard: list[tuple[float, Any]]) -> list[str]:
    return [h.text for _, h in heard if h.kind == "state"]


def loud(seconds: float, rate: int = 16000) -> np.ndarray:
    return np.random.default_rng(3).integers(-8000, 8000, int(seconds * rate)).astype(np.int16)


def test_every_bridge_is_served() -> None:
    app = create_app(Settings(), loaders={})

    paths = {getattr(route, "path", "") for route in app.routes}

    assert {
        "/twilio/media",
        "/twilio/voice",
        "/twilio/relay",
        "/calls",
        "/calls/active",
        "/twilio/status",
        "/audiocodes",
        "/acs",
        "/telnyx",
        "/vonage",
        "/browser",
    } <= paths


def test_call_context_names_the_caller() -> None:
    context = call_context("CA1", {"From": "+15550001", "agent": "bank_card", "day": "Monday"})

    assert context == {
        "From": "+15550001",
        "day": "Monday",
        "call_id": "CA1",
        "caller": "+15550001",
    }


async def test_default_agent_answers_and_moves_on_the_callers_words() -> None:
    app = served_app([Utterance(0.3, 0.8, "I lost my card")])
    async with serving(app) as url, dial(BrowserFarEnd(16000), f"{url}/browser") as call:
        await call.wait_until_quiet(0.3, timeout=10)
        await call.silence(0.3)
        await call.play(loud(0.5), 16000)
        await until(lambda: "identify" in states(call.heard), within=5)
        await call.dtmf("4217#")
        await until(lambda: "verify" in states(call.heard), within=5)

    assert states(call.heard) == ["welcome", "identify", "verify"]


async def test_a_call_names_its_agent() -> None:
    app = served_app([])
    far_end = BrowserFarEnd(16000, agent="clinic_triage")
    async with serving(app) as url, dial(far_end, f"{url}/browser") as call:
        await until(lambda: bool(states(call.heard)), within=5)

    assert states(call.heard)[0] == "reason"


async def test_an_unknown_agent_is_refused_with_its_name() -> None:
    app = served_app([])
    far_end = TwilioMediaFarEnd(parameters={"agent": "no_such_agent"})
    async with serving(app) as url, dial(far_end, f"{url}/twilio/media") as call:
        await asyncio.wait_for(call.wait_ended(), 5)

    assert "unknown agent 'no_such_agent'" in (call.result().end_reason or "")


async def test_a_call_before_the_models_load_is_refused() -> None:
    app = create_app(Settings(), loaders={})
    async with serving(app) as url, dial(TwilioMediaFarEnd(), f"{url}/twilio/media") as call:
        await asyncio.wait_for(call.wait_ended(), 5)

    assert "speech models are still loading" in (call.result().end_reason or "")


# --- the real offline stack ----------------------------------------------------------------


async def wait_ready(app: FastAPI, within: float = 120.0) -> None:
    async with asyncio.timeout(within):
        await app.state.readiness.wait()
    assert app.state.readiness.ready, app.state.readiness.summary()


@pytest.mark.slow
async def test_real_speech_walks_the_bank_agent_over_the_browser_channel(tmp_path: Path) -> None:
    """A caller's voice (Piper) through Silero VAD, pocketsphinx with the state's grammar, the
    FSA and Piper again, over the browser channel at a page's 48 kHz."""
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/calls.db"))
    async with serving(app) as url:
        await wait_ready(app)
        caller = await synthesize(app.state.voice.tts, "I lost my card.")
        async with dial(BrowserFarEnd(48000), f"{url}/browser") as call:
            await call.wait_until_quiet(1.0, timeout=30)
            await call.play(caller.samples, caller.rate)
            await until(lambda: "identify" in states(call.heard), within=20)
            await call.wait_until_quiet(1.0, timeout=30)
            await call.dtmf("4217#")
            await until(lambda: "verify" in states(call.heard), within=20)
            await call.wait_until_quiet(1.0, timeout=30)

    assert states(call.heard) == ["welcome", "identify", "verify"]
    transcripts = [h.text for _, h in call.heard if h.kind == "transcript" and h.detail["final"]]
    assert transcripts == ["i lost my card"]
    assert len(call.result().agent_utterances(gap_s=0.8)) >= 3, "greeting, question, question"


@pytest.mark.slow
async def test_real_speech_over_twilio_reaches_the_identify_state(
    speak: Speak, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    words, rate = speak("my card was stolen")
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/calls.db"))
    caplog.set_level(logging.INFO, logger="opusagent.agent.fsa.agent")
    async with serving(app) as url:
        await wait_ready(app)
        async with dial(TwilioMediaFarEnd(), f"{url}/twilio/media") as call:
            await call.wait_until_quiet(1.0, timeout=30)
            await call.play(words, rate)
            await until(lambda: "welcome -> identify" in caplog.text, within=20)
            await call.wait_until_quiet(1.0, timeout=30)

    assert "(to identify; intent lost_card" in caplog.text
    answer = call.result().agent_utterances(gap_s=0.8)[1]
    assert answer[1] - answer[0] > 2.0, "the agent asked for the card's last four digits"


async def test_dial_relay_walks_the_bank_agent_by_text() -> None:
    app = served_app([])
    script = ["I lost my card", "4217", "march third nineteen eighty", "yes"]
    says = [arg for line in script for arg in ("--say", line)]
    async with serving(app) as url:
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["dial", "relay", f"{url}/twilio/relay", *says]
        )

    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())
    assert "Shall I go ahead?" in output
    assert '"reason":"final state card_replaced"' in output
