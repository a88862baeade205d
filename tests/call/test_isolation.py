"""Calls that run at once on one loop and share stage instances never share state."""

from __future__ import annotations

import asyncio

from opusagent.call.stages import Speaker, TurnKind, UserTurn
from opusagent.testing import (
    FakeTTS,
    FakeVAD,
    ScriptedAgent,
    Timeline,
    TimelineResult,
    play_timeline,
    run_in_virtual_time,
)


def echo(turn: UserTurn) -> str:
    if turn.kind is TurnKind.START:
        return "Hello."
    return f"You said {turn.text or turn.dtmf}."


def test_two_concurrent_calls_never_share_state() -> None:
    agent, vad, tts = ScriptedAgent(echo), FakeVAD(), FakeTTS()
    alice = Timeline(duration=10).say("my card is lost", at=2.0).dtmf("11#", at=6.0)
    bob = Timeline(duration=10).say("book an appointment", at=2.6).hangup(at=8.0)

    async def both() -> tuple[TimelineResult, TimelineResult]:
        return await asyncio.gather(
            play_timeline(alice, agent=agent, vad=vad, tts=tts, call_id="alice"),
            play_timeline(bob, agent=agent, vad=vad, tts=tts, call_id="bob"),
        )

    a, b = run_in_virtual_time(both)

    assert a.caller_lines() == ["my card is lost", "11"]
    assert a.agent_lines() == ["Hello.", "You said my card is lost.", "You said 11."]
    assert b.caller_lines() == ["book an appointment"]
    assert b.agent_lines() == ["Hello.", "You said book an appointment."]
    assert (a.end_reason, b.end_reason) == ("timeline_end", "caller")
    for turn in agent.turns:
        callers = {e.text for e in turn.history if e.speaker is Speaker.CALLER}
        assert not ({"my card is lost", "11"} & callers and {"book an appointment"} & callers)
