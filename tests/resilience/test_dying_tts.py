"""End to end over a real Twilio Media Streams WebSocket on loopback, with the real offline stack
(Silero VAD, pocketsphinx, the bank agent, Piper): the synthesiser dies mid-call. The caller
still hears the fallback line (rendered when the call started), the rules go on deciding each
turn, and after three failures in a row the call ends with the goodbye line."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from bridges.loopback import serving, until
from bridges.test_served_app import wait_ready
from opusagent.app import create_app
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.call.fallback import DEFAULT_FALLBACK_SAY, DEFAULT_GOODBYE_SAY
from opusagent.config import Settings
from opusagent.sessions.store import SessionStore

from .faults import FaultyTTS

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]


async def heard_out(call: DialSession, since: float, within: float = 30) -> None:
    """Wait for the agent's answer to what the caller did at `since`, and for its end."""
    await until(lambda: call.ended or call.agent_audio_until > since, within=within)
    await call.wait_until_quiet(1.0, timeout=30)


@pytest.mark.slow
async def test_a_synthesiser_dying_mid_call_leaves_the_caller_hearing_the_fallback_line(
    speak: Speak, tmp_path: Path
) -> None:
    words, rate = speak("I lost my card")
    app = create_app(Settings(database_url=f"sqlite+aiosqlite:///{tmp_path}/calls.db"))
    store: SessionStore = app.state.sessions
    caller = TwilioMediaFarEnd()
    async with serving(app) as url:
        await wait_ready(app)
        voice = app.state.voice
        tts = voice.tts = FaultyTTS(voice.tts, "raise")
        async with dial(caller, f"{url}/twilio/media", open_timeout=30) as call:
            await call.wait_until_quiet(1.0, timeout=30)
            tts.dead = True
            said_at = call.now
            await call.play(words, rate)
            with contextlib.suppress(TimeoutError):  # the recogniser may hear no words
                await heard_out(call, said_at, within=8)
            for digits in ("4217#", "1#", "2#", "3#"):
                if call.ended:
                    break
                keyed_at = call.now
                await call.dtmf(digits)
                await heard_out(call, keyed_at)
            reason = await call.wait_ended()
        record = await store.load(caller.call_sid)

    assert reason != "hung up", "the server ended the call"
    assert record is not None and record.ended
    agent = [line.text for line in record.state.history if line.speaker == "agent"]
    assert agent[0].startswith("Thank you for calling Opus Bank.")
    assert agent[1:] == [DEFAULT_FALLBACK_SAY, DEFAULT_FALLBACK_SAY, DEFAULT_GOODBYE_SAY]
    decided = [entry.kind for entry in record.state.audit]
    assert decided.count("dtmf") >= 2, "the rules went on deciding every turn"
    heard = call.result().agent_utterances()
    assert len(heard) == 4, "greeting, fallback, fallback, goodbye: never silence"
    assert all(end - start > 2.0 for start, end in heard[1:]), "each line was heard whole"
