"""A slow call never delays another: two concurrent Twilio calls on one server, one whose agent
takes 3 s over every turn; the other's turns are answered as fast as when it is alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping

import pytest

from bridges.loopback import app_with, serving, speech
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.bridges.twilio_media import mount_twilio_media
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import CallMedia
from opusagent.call.stages import ReplyPart, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.testing import FakeTTS, FakeVAD, ScriptedSTT, Utterance

POLICY = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0)
THINKS_S = 3.0
TURNS = [Utterance(0.3 + 1.2 * i, 0.8 + 1.2 * i, f"turn {i}") for i in range(3)]
"""Three utterances, 1.2 s apart: all said while the slow call's agent thinks."""
RATE = 16000


class Thinking:
    """Answers every caller turn after `seconds` (greets at once)."""

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    async def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        if turn.kind is TurnKind.SPEECH:
            await asyncio.sleep(self._seconds)
        yield "Hello." if turn.kind is TurnKind.START else f"You said {turn.text}."


def make_call(call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]) -> Call:
    slow = params.get("speed") == "slow"
    stages = Stages(
        FakeVAD(),
        ScriptedSTT(TURNS),
        Thinking(THINKS_S if slow else 0.0),
        FakeTTS(seconds_per_word=0.05, chunk_s=0.2),
    )
    return Call(call_id, media, stages, send, policy=POLICY)


async def speak_turns(url: str, speed: str) -> DialSession:
    far_end = TwilioMediaFarEnd(parameters={"speed": speed})
    async with dial(far_end, url) as call:
        await call.wait_until_quiet(0.3, timeout=5)
        heard_until = 0.0
        for utterance in TURNS:
            await call.silence(utterance.start - heard_until)
            await call.play(speech(utterance.end - utterance.start), RATE)
            heard_until = utterance.end
        await call.wait_until_quiet(THINKS_S + 0.5, timeout=15)
        await call.hangup()
    return call


def latencies(call: DialSession) -> list[float]:
    found = [turn.latency for turn in call.result().turns]
    assert len(found) == len(TURNS) and all(f is not None for f in found), found
    return [f for f in found if f is not None]


@pytest.mark.slow
async def test_a_slow_call_never_delays_another() -> None:
    app = app_with(lambda app: mount_twilio_media(app, make_call, auth_token=None, public_url=None))
    async with serving(app) as url:
        alone = latencies(await speak_turns(f"{url}/twilio/media", "fast"))
        slow, fast = await asyncio.gather(
            speak_turns(f"{url}/twilio/media", "slow"),
            speak_turns(f"{url}/twilio/media", "fast"),
        )

    assert min(latencies(slow)) > THINKS_S, "the slow agent really was slow"
    assert max(latencies(fast)) < max(alone) + 0.1, (latencies(fast), alone)
    assert max(latencies(fast)) < POLICY.end_of_turn_silence_ms / 1000 + 0.3
