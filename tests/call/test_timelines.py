"""Scripted timelines against a real Call in virtual time (fake stages, real audio path)."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from opusagent.call.events import (
    AgentAudio,
    ClearPlayback,
    HangUp,
    Mark,
    SendDtmf,
    Transfer,
)
from opusagent.call.stages import ReplyPart, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.testing import FakeTTS, ScriptedAgent, Timeline, TimelineResult, run_timeline

GREETING = "Hello there. How can I help you today?"  # 8 words: 2.4 s of fake speech
LONG = (
    "Your card ending in four two has been blocked and a replacement is on its way. "
    "It should arrive within five working days at the address we have on file."
)  # 30 words: 9.0 s
LONG_S = 9.0


def greeter(reply: str = "Thanks.", **by_kind: str) -> ScriptedAgent:
    """Greets, then answers every caller turn with `reply` (or a per-kind reply)."""

    def script(turn: UserTurn) -> str:
        if turn.kind is TurnKind.START:
            return GREETING
        return by_kind.get(turn.kind.value, reply)

    return ScriptedAgent(script)


def answered(agent: ScriptedAgent) -> list[UserTurn]:
    """The turns the agent answered aloud (the closing hang-up turn is never played)."""
    return [t for t in agent.turns if t.kind is not TurnKind.HANGUP]


def last_audio_index(result: TimelineResult, generation: int) -> int:
    """Position among all outputs of the last audio frame of `generation` (-1 if none)."""
    indices = [
        i
        for i, (_, out) in enumerate(result.outputs)
        if isinstance(out, AgentAudio) and out.generation == generation
    ]
    return max(indices, default=-1)


def clear_index(result: TimelineResult) -> int:
    (index,) = [i for i, (_, out) in enumerate(result.outputs) if isinstance(out, ClearPlayback)]
    return index


def test_turn_ends_after_the_end_of_turn_silence() -> None:
    agent = greeter()
    timeline = Timeline(duration=8).say("I lost my card", at=3.0, seconds=1.2)

    result = run_timeline(timeline, agent=agent, policy=TurnPolicy(end_of_turn_silence_ms=500))

    speech_turns = [t for t in result.turns if t.kind is TurnKind.SPEECH]
    assert [t.text for t in speech_turns] == ["I lost my card"]
    assert speech_turns[0].input_ended_at == pytest.approx(4.2)
    assert speech_turns[0].response_latency is not None
    assert 0.5 <= speech_turns[0].response_latency <= 0.5 + 0.03
    assert agent.turns[1].text == "I lost my card"


def test_a_pause_shorter_than_the_silence_does_not_end_the_turn() -> None:
    agent = greeter()
    timeline = (
        Timeline(duration=9)
        .say("I lost my card", at=3.0, seconds=1.2)
        .say("and my PIN", at=4.5, seconds=0.9)
    )

    result = run_timeline(timeline, agent=agent, policy=TurnPolicy(end_of_turn_silence_ms=500))

    assert result.caller_lines() == ["I lost my card and my PIN"]


def test_barge_in_clears_playback_and_drops_the_stale_reply() -> None:
    agent = greeter(reply=LONG)
    timeline = (
        Timeline(duration=16)
        .say("I lost my card", at=3.0, seconds=1.0)
        .say("wait stop please", at=7.0, seconds=0.9)
    )

    result = run_timeline(timeline, agent=agent)

    assert len(result.clears()) == 1
    cleared_at = result.clears()[0]
    assert 7.3 <= cleared_at <= 7.5  # 300 ms of speech and its first word
    cut = result.turns[1]
    assert cut.interrupted
    assert last_audio_index(result, cut.generation) < clear_index(result)
    assert result.audio_sent(cut.generation) < LONG_S / 2
    assert not any(p.start < 9.0 < p.end and p.generation == cut.generation for p in result.played)
    assert answered(agent)[-1].text == "wait stop please"


def test_backchannel_does_not_interrupt() -> None:
    agent = greeter(reply=LONG)
    timeline = (
        Timeline(duration=16)
        .say("I lost my card", at=3.0, seconds=1.0)
        .say("mhm", at=6.0, seconds=0.5)
        .say("okay", at=8.0, seconds=0.5)
    )

    result = run_timeline(timeline, agent=agent)

    assert result.clears() == []
    assert result.turns[1].interrupted is False
    assert result.agent_lines() == [GREETING, LONG]
    assert len(answered(agent)) == 2
    overlaps = [e.text for e in result.history if e.overlapped]
    assert overlaps == ["mhm", "okay"]  # kept in the transcript, never a turn


def test_the_offline_recognisers_spelling_of_mhm_does_not_interrupt() -> None:
    agent = greeter(reply=LONG)
    timeline = (
        Timeline(duration=16)
        .say("I lost my card", at=3.0, seconds=1.0)
        .say("m h m", at=6.0, seconds=0.5)
    )

    result = run_timeline(timeline, agent=agent)

    assert result.clears() == []
    assert len(answered(agent)) == 2


def test_false_interruption_resumes_the_cut_reply() -> None:
    agent = greeter(reply=LONG)
    policy = TurnPolicy(barge_in_min_words=0, false_interruption_ms=1500)
    timeline = (
        Timeline(duration=18).say("I lost my card", at=3.0, seconds=1.0).noise(at=7.0, seconds=0.5)
    )

    result = run_timeline(timeline, agent=agent, policy=policy)

    assert len(result.clears()) == 1
    assert 7.3 <= result.clears()[0] <= 7.32  # paused on 300 ms of speech alone
    reply = result.turns[1]
    assert reply.interrupted is False
    assert result.agent_lines() == [GREETING, LONG]
    resumed = [p for p in result.played if p.generation == reply.generation and p.start > 7.5]
    assert resumed, "the reply resumed after the noise"
    played = sum(p.end - p.start for p in result.played if p.generation == reply.generation)
    assert abs(played - LONG_S) < 0.2  # heard once, in full, despite the pause
    assert len(answered(agent)) == 2


def test_speech_with_words_after_a_pause_confirms_the_interruption() -> None:
    agent = greeter(reply=LONG)
    policy = TurnPolicy(barge_in_min_words=0)
    timeline = (
        Timeline(duration=16)
        .say("I lost my card", at=3.0, seconds=1.0)
        .say("no that is wrong", at=7.0, seconds=1.2)
    )

    result = run_timeline(timeline, agent=agent, policy=policy)

    assert result.turns[1].interrupted
    assert answered(agent)[-1].text == "no that is wrong"


def test_history_holds_only_the_words_the_caller_heard() -> None:
    agent = greeter(reply=LONG)
    timeline = (
        Timeline(duration=14)
        .say("I lost my card", at=3.0, seconds=1.0)
        .say("hold on a second", at=6.0, seconds=1.0)
    )

    result = run_timeline(timeline, agent=agent)

    cut = next(e for e in result.history if e.interrupted)
    assert cut.generated == LONG
    heard_words = cut.text.split()
    assert 0 < len(heard_words) < len(LONG.split())
    assert LONG.startswith(cut.text)
    # The reply started at 4.5 s and was cut at ~6.3 s: about 1.8 s = 6 words were heard.
    played = sum(
        p.end - p.start for p in result.played if p.generation == result.turns[1].generation
    )
    assert abs(len(heard_words) - played / 0.3) <= 1.5
    assert answered(agent)[-1].history[-2].text == cut.text


def test_history_without_marks_uses_the_pacer_clock() -> None:
    agent = greeter(reply=LONG)
    timeline = (
        Timeline(duration=14)
        .say("I lost my card", at=3.0, seconds=1.0)
        .say("hold on a second", at=6.0, seconds=1.0)
    )

    result = run_timeline(timeline, agent=agent, marks=False)

    assert result.of_type(Mark) == []
    cut = next(e for e in result.history if e.interrupted)
    played = sum(
        p.end - p.start for p in result.played if p.generation == result.turns[1].generation
    )
    assert abs(len(cut.text.split()) - played / 0.3) <= 1.5


def test_dtmf_reaches_the_agent_when_the_terminator_is_pressed() -> None:
    agent = greeter()
    timeline = Timeline(duration=8).dtmf("1234#", at=3.0)

    result = run_timeline(timeline, agent=agent)

    dtmf_turns = [t for t in agent.turns if t.kind is TurnKind.DTMF]
    assert [t.dtmf for t in dtmf_turns] == ["1234"]
    assert result.caller_lines() == ["1234"]


def test_dtmf_turn_completes_after_the_inter_digit_pause() -> None:
    agent = greeter()
    timeline = Timeline(duration=8).dtmf("42", at=3.0)

    result = run_timeline(timeline, agent=agent, policy=TurnPolicy(dtmf_inter_digit_ms=1000))

    turn = next(t for t in result.turns if t.kind is TurnKind.DTMF)
    assert turn.dtmf == "42"
    assert turn.input_ended_at == 3.25 + 1.0


def test_dtmf_interrupts_the_agent() -> None:
    agent = greeter(reply=LONG)
    timeline = Timeline(duration=8).dtmf("#", at=1.0)

    result = run_timeline(timeline, agent=agent)

    assert result.clears() == [1.0]
    assert result.turns[0].interrupted


def test_no_input_timeout_fires_after_the_agent_stops_speaking() -> None:
    agent = greeter(no_input="Are you still there?")
    timeline = Timeline(duration=12)

    result = run_timeline(timeline, agent=agent, policy=TurnPolicy(no_input_timeout_ms=3000))

    no_input = [t for t in result.turns if t.kind is TurnKind.NO_INPUT]
    assert len(no_input) == 2
    greeting_end = max(p.end for p in result.played if p.generation == 1)
    assert abs(no_input[0].input_ended_at - (greeting_end + 3.0)) < 0.05


def test_speech_cancels_the_no_input_timeout() -> None:
    agent = greeter()
    timeline = Timeline(duration=7).say("yes", at=4.0, seconds=0.4)

    result = run_timeline(timeline, agent=agent, policy=TurnPolicy(no_input_timeout_ms=3000))

    assert [t.kind for t in result.turns] == [TurnKind.START, TurnKind.SPEECH]


def test_actions_follow_the_speech_before_them() -> None:
    def script(turn: UserTurn) -> list[ReplyPart]:
        if turn.kind is TurnKind.START:
            return ["Transferring you now.", Transfer("+15550100"), SendDtmf("9")]
        return []

    result = run_timeline(Timeline(duration=5), agent=ScriptedAgent(script))

    speech_end = max(p.end for p in result.played)
    (transfer_at, transfer), *_ = result.of_type(Transfer)
    assert transfer.target == "+15550100"
    assert abs(transfer_at - speech_end) < 0.001
    assert result.of_type(SendDtmf)[0][0] >= transfer_at


def test_agent_hangup_ends_the_call_after_the_goodbye_plays() -> None:
    def script(turn: UserTurn) -> list[ReplyPart]:
        return ["Goodbye.", HangUp("done")] if turn.kind is TurnKind.START else []

    result = run_timeline(Timeline(duration=5), agent=ScriptedAgent(script))

    (hangup_at, _), *_ = result.of_type(HangUp)
    assert abs(hangup_at - 0.3) < 0.001
    assert result.end_reason == "agent_hangup: done"
    assert result.agent_lines() == ["Goodbye."]


def test_max_call_duration_hangs_up() -> None:
    result = run_timeline(
        Timeline(duration=10), agent=greeter(), policy=TurnPolicy(max_call_duration_s=4.0)
    )

    assert [t for t, _ in result.of_type(HangUp)] == [4.0]
    assert result.end_reason == "max_duration"


def test_caller_hangup_mid_reply_keeps_what_was_heard() -> None:
    agent = greeter()
    timeline = Timeline(duration=10).hangup(at=1.2)

    result = run_timeline(timeline, agent=agent)

    assert result.end_reason == "caller"
    (line,) = result.history
    assert line.interrupted and line.text == "Hello there. How can"
    assert agent.turns[-1].kind is TurnKind.HANGUP


def test_slow_tts_chunks_of_a_cut_reply_never_reach_the_caller() -> None:
    agent = greeter(reply=LONG)
    tts = FakeTTS(latency_s=0.4)
    timeline = (
        Timeline(duration=16)
        .say("I lost my card", at=3.5, seconds=1.0)
        .say("stop right there", at=6.5, seconds=0.9)
    )

    result = run_timeline(timeline, agent=agent, tts=tts)

    cut = result.turns[1]
    assert cut.interrupted
    assert 0 <= last_audio_index(result, cut.generation) < clear_index(result)


def test_outbound_frames_are_exactly_20_ms_and_paced_in_real_time() -> None:
    result = run_timeline(Timeline(duration=4), agent=greeter())

    frames = result.of_type(AgentAudio)
    assert {len(out.chunk.data) for _, out in frames} == {160}
    lead = [p.start - t for (t, _), p in zip(frames, result.played, strict=True)]
    assert max(lead) <= 0.06 - 0.02 + 1e-5  # at most 60 ms buffered once a frame is sent
    assert result.played[-1].end - result.played[0].start == pytest.approx(len(frames) * 0.02)
    assert abs(result.audio_sent() - 2.4) <= 0.02  # 8 words of 0.3 s: duration in = duration out


def test_the_recording_puts_the_caller_left_and_the_agent_right(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    timeline = Timeline(duration=6).say("I lost my card", at=3.0, seconds=1.0)

    result = run_timeline(timeline, agent=greeter(reply="Okay."), recording=path)

    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 16000)
        audio = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).reshape(-1, 2)
    caller, agent = np.abs(audio[:, 0].astype(np.int32)), np.abs(audio[:, 1].astype(np.int32))

    def loud(channel: npt.NDArray[np.int32], start: float, end: float) -> bool:
        return float(channel[int(start * 16000) : int(end * 16000)].mean()) > 500

    assert loud(caller, 3.1, 3.9) and not loud(caller, 1.0, 2.0)
    assert loud(agent, 0.1, 2.3) and not loud(agent, 3.1, 3.9)
    reply = next(p for p in result.played if p.generation == 2)
    assert loud(agent, reply.start + 0.02, reply.start + 0.2)


def test_a_clear_is_only_sent_when_something_is_playing() -> None:
    result = run_timeline(
        Timeline(duration=8).say("I lost my card", at=3.0, seconds=1.0), agent=greeter()
    )

    assert result.of_type(ClearPlayback) == []
