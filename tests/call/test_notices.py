"""Notices: what the Call tells its bridge about the call, at once and unpaced."""

from __future__ import annotations

import pytest

from opusagent.call.events import (
    AgentAudio,
    AgentStatus,
    AgentText,
    CallerSpeech,
    CallerTranscript,
    ReplyAudioEnd,
    ReplyLatency,
)
from opusagent.call.stages import ReplyPart, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.testing import ScriptedAgent, Timeline, run_timeline

POLICY = TurnPolicy(end_of_turn_silence_ms=500)


def status_then_reply(turn: UserTurn) -> list[ReplyPart]:
    state = "greeting" if turn.kind is TurnKind.START else "answered"
    return [AgentStatus(state, {"turn": turn.kind.value}), "Hello there."]


def test_caller_speech_start_and_stop_are_told() -> None:
    timeline = Timeline(duration=6).say("I lost my card", at=3.0, seconds=1.2)

    result = run_timeline(timeline, agent=ScriptedAgent(status_then_reply), policy=POLICY)

    speech = result.of_type(CallerSpeech)
    assert [notice.started for _, notice in speech] == [True, False]
    assert speech[0][0] == pytest.approx(3.0, abs=0.2)  # after the minimum speech
    assert speech[1][0] == pytest.approx(4.7, abs=0.2)  # after the end-of-turn silence


def test_final_transcript_is_told() -> None:
    timeline = Timeline(duration=6).say("I lost my card", at=3.0, seconds=1.2)

    result = run_timeline(timeline, agent=ScriptedAgent(status_then_reply), policy=POLICY)

    finals = [n.text for _, n in result.of_type(CallerTranscript) if n.final]
    assert finals == ["I lost my card"]


def test_agent_status_goes_out_before_the_reply_audio() -> None:
    timeline = Timeline(duration=6).say("I lost my card", at=3.0, seconds=1.2)

    result = run_timeline(timeline, agent=ScriptedAgent(status_then_reply), policy=POLICY)

    statuses = result.of_type(AgentStatus)
    assert [s.state for _, s in statuses] == ["greeting", "answered"]
    first_reply_audio = min(t for t, out in result.of_type(AgentAudio) if out.generation == 2)
    assert statuses[1][0] <= first_reply_audio


def test_reply_latency_and_audio_end_are_told_per_reply() -> None:
    timeline = Timeline(duration=6).say("I lost my card", at=3.0, seconds=1.2)

    result = run_timeline(timeline, agent=ScriptedAgent(status_then_reply), policy=POLICY)

    latencies = {n.generation: n.seconds for _, n in result.of_type(ReplyLatency)}
    speech_turn = next(t for t in result.turns if t.kind is TurnKind.SPEECH)
    assert latencies[speech_turn.generation] == pytest.approx(speech_turn.response_latency)
    ends = [n.generation for _, n in result.of_type(ReplyAudioEnd)]
    assert ends == [1, 2]


def test_agent_words_are_told_as_they_are_synthesised() -> None:
    timeline = Timeline(duration=6).say("I lost my card", at=3.0, seconds=1.2)

    result = run_timeline(timeline, agent=ScriptedAgent(status_then_reply), policy=POLICY)

    words = "".join(n.text for _, n in result.of_type(AgentText) if n.generation == 2)
    assert words.strip() == "Hello there."
