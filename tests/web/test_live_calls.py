"""The registry of calls in progress, fed by the notices a call sends its bridge."""

from __future__ import annotations

from opusagent.audio.formats import PCM16_16K, AudioChunk
from opusagent.call.events import (
    AgentAudio,
    AgentStatus,
    AgentText,
    CallerSpeech,
    CallerTranscript,
    CallOutput,
    ClearPlayback,
    Mark,
    ReplyLatency,
)
from opusagent.sessions.live import LiveCall, LiveCalls, LiveDecision, LiveLine


def live_call(call_id: str = "c1") -> LiveCall:
    return LiveCall(call_id, bridge="browser", agent="bank_card")


def noted(*outputs: CallOutput) -> LiveCall:
    call = live_call()
    for output in outputs:
        call.note(output)
    return call


def test_a_new_call_has_nothing_yet() -> None:
    call = live_call()

    assert (call.state, call.path, call.transcript, call.last_latency_s) == (None, [], [], None)
    assert 0 <= call.duration_s < 1


def test_the_agents_status_gives_state_path_slots_and_decisions() -> None:
    call = noted(
        AgentStatus("welcome", {"slots": {}, "decision": "start", "turn": 0}),
        AgentStatus("identify", {"slots": {}, "decision": "to identify", "turn": 1}),
        AgentStatus("identify", {"slots": {}, "decision": "stay (reprompt)", "turn": 2}),
        AgentStatus(
            "verify", {"slots": {"card_last4": "4217"}, "decision": "to verify", "turn": 3}
        ),
    )

    assert call.state == "verify"
    assert call.path == ["welcome", "identify", "verify"]
    assert call.slots == {"card_last4": "4217"}
    assert [d.decision for d in call.decisions] == [
        "start",
        "to identify",
        "stay (reprompt)",
        "to verify",
    ]
    assert call.decisions[-1] == LiveDecision(3, "verify", "to verify")


def test_a_reply_is_one_line_however_many_pieces_it_comes_in() -> None:
    call = noted(
        AgentText(1, "Thank you for calling."),
        AgentText(1, " How can I help? "),
        CallerTranscript("i lost my card", final=True),
        AgentText(2, "I can help with that."),
    )

    assert call.transcript == [
        LiveLine("agent", "Thank you for calling. How can I help?", 1),
        LiveLine("caller", "i lost my card"),
        LiveLine("agent", "I can help with that.", 2),
    ]


def test_partials_show_until_the_final_replaces_them() -> None:
    call = noted(CallerTranscript("i lost", final=False))
    assert (call.partial, call.transcript) == ("i lost", [])

    call.note(CallerTranscript("i lost my card", final=True, confidence=0.9))

    assert call.partial == ""
    assert call.transcript == [LiveLine("caller", "i lost my card")]


def test_an_empty_final_adds_no_line() -> None:
    assert noted(CallerTranscript("", final=True)).transcript == []


def test_barge_in_marks_the_cut_reply_interrupted() -> None:
    call = noted(AgentText(1, "Hello."), AgentText(2, "A long answer"), ClearPlayback(2))

    assert [line.interrupted for line in call.transcript] == [False, True]


def test_latencies_and_speech_are_kept() -> None:
    call = noted(ReplyLatency(1, 0.5), ReplyLatency(2, 0.25), CallerSpeech(started=True))

    assert call.latencies_s == [0.5, 0.25]
    assert call.last_latency_s == 0.25
    assert call.caller_speaking


async def test_watching_notes_each_output_and_passes_it_on_unchanged() -> None:
    sent: list[CallOutput] = []

    async def send(output: CallOutput) -> None:
        sent.append(output)

    call = live_call()
    outputs: list[CallOutput] = [
        AgentAudio(AudioChunk(b"\0\0" * 320, PCM16_16K), 1),
        Mark("c1:1:1"),
        AgentStatus("welcome", {}),
        AgentText(1, "Hello."),
    ]
    watched = call.watching(send)
    for output in outputs:
        await watched(output)

    assert sent == outputs
    assert call.state == "welcome"
    assert call.transcript == [LiveLine("agent", "Hello.", 1)]


def test_the_registry_lists_calls_oldest_first_until_removed() -> None:
    live = LiveCalls()
    first, second = live_call("a"), live_call("b")
    second.started = first.started + 1
    live.add(second)
    live.add(first)

    assert [c.call_id for c in live.calls()] == ["a", "b"]
    assert live.get("b") is second

    live.remove(first)

    assert [c.call_id for c in live.calls()] == ["b"]
    assert live.get("a") is None
    assert len(live) == 1


def test_a_reconnect_replaces_the_entry_and_the_old_ones_end_leaves_it() -> None:
    live = LiveCalls()
    dropped, resumed = live_call("c1"), live_call("c1")
    live.add(dropped)
    live.add(resumed)

    live.remove(dropped)

    assert live.get("c1") is resumed
