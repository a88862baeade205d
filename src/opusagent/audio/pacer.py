"""Outbound pacing on a monotonic clock with a bounded lead.

The provider plays our frames back to back. We keep an estimate of where its playout is
(`playout_end`) and send a frame only while the audio buffered ahead of real time stays
within `lead`. The estimate is anchored to the clock whenever the provider's buffer runs dry
and then advances by whole frames, so it never drifts, however long the call.
"""

from __future__ import annotations


class Pacer:
    """Decides when the next outbound frame may be sent and what has played so far."""

    __slots__ = ("_anchor", "_frame_s", "_frames_since_anchor", "_lead_s")

    def __init__(self, frame_s: float, lead_s: float) -> None:
        if frame_s <= 0:
            raise ValueError(f"frame_s must be positive, got {frame_s}")
        if lead_s < frame_s:
            raise ValueError(f"lead_s ({lead_s}) must be at least one frame ({frame_s})")
        self._frame_s = frame_s
        self._lead_s = lead_s
        self._anchor = 0.0
        self._frames_since_anchor = 0

    @property
    def frame_s(self) -> float:
        return self._frame_s

    @property
    def playout_end(self) -> float:
        """Clock time at which everything sent so far will have played."""
        return self._anchor + self._frames_since_anchor * self._frame_s

    def buffered(self, now: float) -> float:
        """Seconds of sent audio the provider has not played yet."""
        return max(0.0, self.playout_end - now)

    def delay_until_next(self, now: float) -> float:
        """Seconds to wait before one more frame fits within the lead (0 when it may go now)."""
        return max(0.0, self.playout_end + self._frame_s - self._lead_s - now)

    def sent(self, now: float) -> float:
        """Record one frame sent at `now`; returns the clock time at which it starts playing."""
        if self.playout_end <= now:
            self._anchor = now
            self._frames_since_anchor = 0
        start = self.playout_end
        self._frames_since_anchor += 1
        return start

    def clear(self, now: float) -> None:
        """The provider dropped its buffer: nothing is queued past `now`."""
        if self.playout_end > now:
            self._anchor = now
            self._frames_since_anchor = 0
