"""The outbound pacer: bounded lead, no drift, and what a clear does."""

from __future__ import annotations

import pytest

from opusagent.audio.pacer import Pacer


def send_all_allowed(pacer: Pacer, now: float) -> int:
    sent = 0
    while pacer.delay_until_next(now) == 0.0:
        pacer.sent(now)
        sent += 1
    return sent


def test_lead_is_bounded() -> None:
    pacer = Pacer(0.02, 0.06)

    assert send_all_allowed(pacer, 0.0) == 3
    assert pacer.buffered(0.0) == pytest.approx(0.06)


def test_no_drift_over_a_ten_minute_call_with_late_wakeups() -> None:
    pacer = Pacer(0.02, 0.06)
    now, frames = 0.0, 0
    while now < 600.0:
        frames += send_all_allowed(pacer, now)
        now += pacer.delay_until_next(now) + 0.0037  # every wake-up is 3.7 ms late
    assert pacer.playout_end == pytest.approx(frames * 0.02, abs=1e-9)
    assert pacer.buffered(now) <= 0.06


def test_an_underrun_restarts_playout_at_the_current_time() -> None:
    pacer = Pacer(0.02, 0.06)
    pacer.sent(0.0)

    assert pacer.sent(5.0) == 5.0
    assert pacer.playout_end == pytest.approx(5.02)


def test_clear_empties_the_provider_buffer() -> None:
    pacer = Pacer(0.02, 0.06)
    send_all_allowed(pacer, 1.0)

    pacer.clear(1.01)

    assert pacer.buffered(1.01) == 0.0
    assert pacer.sent(1.01) == pytest.approx(1.01)


def test_lead_shorter_than_a_frame_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        Pacer(0.02, 0.01)
