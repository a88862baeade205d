"""A stage that raises, hangs or returns garbage: the caller hears the fallback line, never
silence, and the next turn works; after too many failures in a row the call is handed off.

Scripted timelines in virtual time: a real Call, fake stages wrapped to fail on cue."""

from __future__ import annotations

import logging

import pytest

from opusagent.call.events import AgentAudio, AgentText, HangUp, StageFailed, Transfer
from opusagent.call.fallback import DEFAULT_FALLBACK_SAY, Fallback
from opusagent.call.stages import TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.testing import FakeTTS, ScriptedAgent, Timeline, TimelineResult, run_timeline

from .faults import FaultyAgent, FaultySTT, FaultyTTS

POLICY = TurnPolicy(
    end_of_turn_silence_ms=300,
    no_input_timeout_ms=0,
    stt_final_timeout_ms=1000,
    agent_timeout_ms=1500,
    tts_timeout_ms=1000,
)
FALLBACK = DEFAULT_FALLBACK_SAY
SILENCE_S = POLICY.end_of_turn_silence_ms / 1000


def waited(result: TimelineResult, turn: int) -> float:
    """How long the caller waited for turn `turn`'s reply beyond the end-of-turn silence."""
    latency = result.turns[turn].response_latency
    assert latency is not None
    return latency - SILENCE_S


def echo(turn: UserTurn) -> str:
    if turn.kind is TurnKind.START:
        return "Hello."
    return f"You said {turn.text or turn.dtmf}."


def breaking_then_fine() -> Timeline:
    """The caller says something that breaks a stage, then something that does not."""
    return Timeline(duration=14).say("break it", at=2.0).say("my card", at=9.0)


def fallback_was_played(result: TimelineResult) -> bool:
    """The fallback line went out as text and as audio of the same reply."""
    texts = [(t, out) for t, out in result.of_type(AgentText) if out.text == FALLBACK]
    return len(texts) == 1 and result.audio_sent(texts[0][1].generation) > 3.0


def failures(result: TimelineResult) -> list[tuple[str, str]]:
    return [(out.stage, out.kind) for _, out in result.of_type(StageFailed)]


@pytest.mark.parametrize("fault", ["raise", "hang"])
def test_a_failing_agent_gets_the_fallback_line_then_the_next_turn_works(fault: str) -> None:
    agent = FaultyAgent(ScriptedAgent(echo), fault, lambda turn: "break" in turn.text)  # type: ignore[arg-type]

    result = run_timeline(breaking_then_fine(), agent=agent, policy=POLICY)

    assert result.agent_lines() == ["Hello.", FALLBACK, "You said my card."]
    assert failures(result) == [("agent", "error" if fault == "raise" else "timeout")]
    assert fallback_was_played(result)
    assert [t.failure is not None for t in result.turns] == [False, True, False]
    assert result.caller_lines() == ["break it", "my card"], "nothing the caller said is lost"


def test_a_hanging_agent_is_given_up_on_within_its_bound() -> None:
    agent = FaultyAgent(ScriptedAgent(echo), "hang", lambda turn: "break" in turn.text)

    result = run_timeline(breaking_then_fine(), agent=agent, policy=POLICY)

    assert POLICY.agent_timeout_ms / 1000 <= waited(result, 1) < 1.6


@pytest.mark.parametrize("fault", ["raise", "hang", "garbage"])
def test_a_failing_synthesiser_gets_the_fallback_line_then_the_next_turn_works(
    fault: str,
) -> None:
    tts = FaultyTTS(FakeTTS(), fault, "break")  # type: ignore[arg-type]

    result = run_timeline(breaking_then_fine(), agent=ScriptedAgent(echo), policy=POLICY, tts=tts)

    kind = {"raise": "error", "hang": "timeout", "garbage": "garbage"}[fault]
    assert failures(result) == [("tts", kind)]
    assert result.agent_lines() == ["Hello.", FALLBACK, "You said my card."]
    assert fallback_was_played(result)


def test_a_hanging_synthesiser_is_given_up_on_within_its_bound() -> None:
    tts = FaultyTTS(FakeTTS(), "hang", "break")

    result = run_timeline(breaking_then_fine(), agent=ScriptedAgent(echo), policy=POLICY, tts=tts)

    assert POLICY.tts_timeout_ms / 1000 <= waited(result, 1) < 1.1


def test_a_recogniser_whose_results_raise_is_replaced_and_the_call_goes_on() -> None:
    timeline = breaking_then_fine()
    stt = FaultySTT(timeline.utterances, "raise", "break")

    result = run_timeline(timeline, agent=ScriptedAgent(echo), policy=POLICY, stt=stt)

    assert stt.opened == 2, "a new stream replaced the broken one"
    assert failures(result) == [("stt", "error")]
    assert result.agent_lines() == ["Hello.", FALLBACK, "You said my card."]
    assert fallback_was_played(result)


def test_a_recogniser_that_never_finalises_gets_the_fallback_line() -> None:
    timeline = breaking_then_fine()
    stt = FaultySTT(timeline.utterances, "hang", "break")

    result = run_timeline(timeline, agent=ScriptedAgent(echo), policy=POLICY, stt=stt)

    assert failures(result) == [("stt", "timeout")]
    assert result.agent_lines() == ["Hello.", FALLBACK, "You said my card."]
    assert POLICY.stt_final_timeout_ms / 1000 <= waited(result, 1) < 1.1


def test_a_late_final_with_a_partial_uses_the_partial_and_says_no_fallback() -> None:
    timeline = Timeline(duration=8).say("my card is lost", at=2.0)
    policy = POLICY.model_copy(update={"stt_final_timeout_ms": 500})

    result = run_timeline(timeline, agent=ScriptedAgent(echo), policy=policy, stt_final_delay_s=5.0)

    assert failures(result) == [("stt", "timeout")]
    assert result.agent_lines() == ["Hello.", "You said my card is lost."]


def test_the_fallback_line_is_heard_from_a_synthesiser_that_died_mid_call() -> None:
    tts = FaultyTTS(FakeTTS(), "raise", "You said", dies=True)
    timeline = Timeline(duration=14).say("hello", at=2.0).say("again", at=9.0)

    result = run_timeline(timeline, agent=ScriptedAgent(echo), policy=POLICY, tts=tts)

    assert result.agent_lines() == ["Hello.", FALLBACK, FALLBACK]
    texts = [out for _, out in result.of_type(AgentText) if out.text == FALLBACK]
    assert all(result.audio_sent(out.generation) > 3.0 for out in texts)


def test_after_the_limit_of_failures_in_a_row_the_call_ends_politely() -> None:
    agent = FaultyAgent(ScriptedAgent(echo), "raise", lambda turn: turn.kind is TurnKind.SPEECH)
    timeline = Timeline(duration=30).say("one", at=2.0).say("two", at=9.0).say("three", at=16.0)
    fallback = Fallback(limit=2)

    result = run_timeline(timeline, agent=agent, policy=POLICY, fallback=fallback)

    assert result.agent_lines() == ["Hello.", FALLBACK, fallback.handoff_say]
    hangups = result.of_type(HangUp)
    assert [h.reason for _, h in hangups] == ["stage_failures"]
    assert result.end_reason == "agent_hangup: stage_failures"
    last_audio = max(t for t, out in result.outputs if isinstance(out, AgentAudio))
    assert hangups[0][0] >= last_audio, "the goodbye is heard before the hang-up"
    assert agent.broken == 2, "the third utterance never reached the agent"


def test_the_hand_off_transfers_when_the_agent_says_where() -> None:
    agent = FaultyAgent(ScriptedAgent(echo), "raise", lambda turn: turn.kind is TurnKind.SPEECH)
    timeline = Timeline(duration=20).say("one", at=2.0).say("two", at=9.0)
    fallback = Fallback(limit=2, handoff_say="Let me put you through.", handoff=Transfer("+1555"))

    result = run_timeline(timeline, agent=agent, policy=POLICY, fallback=fallback)

    assert result.agent_lines() == ["Hello.", FALLBACK, "Let me put you through."]
    assert [t.target for _, t in result.of_type(Transfer)] == ["+1555"]


def test_a_reply_that_plays_whole_starts_the_count_again() -> None:
    agent = FaultyAgent(ScriptedAgent(echo), "raise", lambda turn: "break" in turn.text)
    timeline = Timeline(duration=30).say("break", at=2.0).say("fine", at=9.0).say("break", at=14.0)

    result = run_timeline(timeline, agent=agent, policy=POLICY, fallback=Fallback(limit=2))

    assert result.agent_lines() == ["Hello.", FALLBACK, "You said fine.", FALLBACK]
    assert result.of_type(HangUp) == []


def test_each_failure_is_logged_once_with_the_call_id(caplog: pytest.LogCaptureFixture) -> None:
    agent = FaultyAgent(ScriptedAgent(echo), "raise", lambda turn: "break" in turn.text)

    with caplog.at_level(logging.WARNING, logger="opusagent.call"):
        run_timeline(breaking_then_fine(), agent=agent, policy=POLICY)

    lines = [r.getMessage() for r in caplog.records if "agent error" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("call timeline: agent error: BrokenStageError")
