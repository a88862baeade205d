"""Which words were heard, from how far playback got."""

from __future__ import annotations

from opusagent.call.playback import ReplyLedger


def ledger() -> ReplyLedger:
    reply = ReplyLedger(generation=1)
    reply.add_text("One two three.")
    reply.add_audio(0.9)
    reply.add_text("Four five six seven.")
    reply.add_audio(0.6)
    reply.add_audio(0.6)
    return reply


def test_fully_played_segments_are_heard_whole() -> None:
    assert ledger().heard_text(0.9) == "One two three."


def test_a_partly_played_segment_counts_pro_rata() -> None:
    assert ledger().heard_text(0.9 + 0.6) == "One two three. Four five"


def test_nothing_played_means_nothing_heard() -> None:
    assert ledger().heard_text(0.0) == ""


def test_continuation_audio_extends_the_last_segment() -> None:
    reply = ledger()

    assert reply.next_boundary_after(1.0) == 2.1
    assert reply.generated_text == "One two three. Four five six seven."
