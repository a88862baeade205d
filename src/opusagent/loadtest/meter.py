"""What the caller hears of the agent's audio, frame by frame: the gaps between frames within a
reply and the underruns (a frame arriving after the audio before it had finished playing)."""

from __future__ import annotations

import asyncio
from array import array
from collections.abc import Callable, Mapping

from opusagent.audio.formats import AudioFormat
from opusagent.bridges.farend import FarEnd, Play, Reaction
from opusagent.bridges.session import Frame

UNDERRUN_TOLERANCE_S = 0.001
"""Lateness below this is clock granularity, not a gap the caller hears."""


class AudioMeter:
    """Arrival times of one call's agent audio frames, split into replies by `reply_begins`."""

    __slots__ = ("_clock", "_last", "_play_end", "_waiter", "frames", "gaps", "underruns")

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._last: float | None = None
        self._play_end = 0.0
        self.frames = 0
        self.gaps = array("d")
        """Seconds between consecutive agent frames of the same reply."""
        self.underruns = 0
        self._waiter: asyncio.Future[None] | None = None

    def next_frame(self) -> asyncio.Future[None]:
        """Done when the next agent frame arrives."""
        self._waiter = asyncio.get_running_loop().create_future()
        return self._waiter

    def reply_begins(self) -> None:
        """The caller spoke: the next frame starts a new reply, not a gap in the last one."""
        self._last = None

    def frame(self, duration_s: float) -> None:
        now = self._clock()
        self.frames += 1
        if self._last is not None:
            self.gaps.append(now - self._last)
            if now > self._play_end + UNDERRUN_TOLERANCE_S:
                self.underruns += 1
        self._play_end = max(now, self._play_end) + duration_s
        self._last = now
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class MeteredFarEnd:
    """A far end that tells `meter` about each agent audio frame it receives; everything else
    is the wrapped far end's own."""

    def __init__(self, inner: FarEnd, meter: AudioMeter) -> None:
        self._inner = inner
        self._meter = meter
        self._format = inner.audio_format

    @property
    def audio_format(self) -> AudioFormat:
        return self._format

    @property
    def frame_ms(self) -> int:
        return self._inner.frame_ms

    @property
    def waits_for_ready(self) -> bool:
        return self._inner.waits_for_ready

    def headers(self) -> Mapping[str, str]:
        return self._inner.headers()

    def opening(self) -> list[Frame]:
        return self._inner.opening()

    def audio(self, data: bytes) -> Frame:
        return self._inner.audio(data)

    def dtmf(self, digit: str) -> list[Frame]:
        return self._inner.dtmf(digit)

    def hangup(self) -> list[Frame]:
        return self._inner.hangup()

    def marker_played(self, token: str) -> Frame | None:
        return self._inner.marker_played(token)

    def receive(self, frame: Frame) -> list[Reaction]:
        reactions = self._inner.receive(frame)
        for reaction in reactions:
            if isinstance(reaction, Play):
                self._meter.frame(self._format.duration(reaction.data))
        return reactions

    def resumed(self) -> FarEnd:
        return MeteredFarEnd(self._inner.resumed(), self._meter)
