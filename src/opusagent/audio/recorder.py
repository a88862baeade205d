"""Stereo call recording: caller on the left channel, agent on the right, aligned by call time."""

from __future__ import annotations

import wave
from pathlib import Path
from types import TracebackType

import numpy as np
import numpy.typing as npt

from opusagent.call.stages import Samples

_CALLER, _AGENT = 0, 1


class StereoRecorder:
    """Writes a 16-bit stereo WAV incrementally while the call runs.

    Audio is placed by its call-relative start time; gaps are silence and a later chunk overwrites
    any overlap. A window of not-yet-written audio is kept in memory and written out once the
    caller timeline (which arrives continuously) has moved `holdback` seconds past it, so agent
    audio stamped slightly behind the caller timeline still lands. Audio older than what has been
    written is dropped.
    """

    def __init__(
        self,
        path: Path,
        sample_rate: int,
        *,
        holdback: float = 0.5,
        flush_every: float = 1.0,
    ) -> None:
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if holdback < 0:
            raise ValueError(f"holdback must not be negative, got {holdback}")
        self.path = path
        self.sample_rate = sample_rate
        self._holdback = round(holdback * sample_rate)
        self._flush_every = max(1, round(flush_every * sample_rate))
        self._wav = wave.open(str(path), "wb")  # noqa: SIM115 - open until close()
        self._wav.setnchannels(2)
        self._wav.setsampwidth(2)
        self._wav.setframerate(sample_rate)
        self._written = 0
        """Samples per channel already on disk; `_window[0]` is the sample at this index."""
        self._window: npt.NDArray[np.int16] = np.zeros((self._flush_every * 2, 2), dtype=np.int16)
        self._ends = [0, 0]
        """End index (exclusive, call-absolute) of the audio placed on each channel."""
        self._closed = False

    def caller(self, samples: Samples, at: float) -> None:
        """Record caller audio whose first sample plays at `at` seconds into the call."""
        self._place(_CALLER, samples, at)
        if self._ends[_CALLER] - self._holdback - self._written >= self._flush_every:
            self._write_until(self._ends[_CALLER] - self._holdback)

    def agent(self, samples: Samples, at: float) -> None:
        """Record agent audio whose first sample plays at `at` seconds into the call."""
        self._place(_AGENT, samples, at)

    def close(self) -> None:
        """Write everything left (up to the later of both channels' ends) and finish the file."""
        if self._closed:
            return
        self._closed = True
        self._write_until(max(self._ends))
        self._wav.close()

    def __enter__(self) -> StereoRecorder:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _place(self, channel: int, samples: Samples, at: float) -> None:
        if self._closed:
            raise ValueError("recorder is closed")
        if samples.ndim != 1:
            raise ValueError(f"expected mono samples, got shape {samples.shape}")
        start = max(0, round(at * self.sample_rate))
        end = start + len(samples)
        skip = max(0, self._written - start)
        if skip >= len(samples):
            return
        first, last = start + skip - self._written, end - self._written
        if last > len(self._window):
            self._grow(last)
        self._window[first:last, channel] = samples[skip:]
        self._ends[channel] = max(self._ends[channel], end)

    def _grow(self, needed: int) -> None:
        grown = np.zeros((max(needed, 2 * len(self._window)), 2), dtype=np.int16)
        grown[: len(self._window)] = self._window
        self._window = grown

    def _write_until(self, index: int) -> None:
        count = index - self._written
        if count <= 0:
            return
        self._wav.writeframesraw(self._window[:count].astype("<i2", copy=False).tobytes())
        held = max(self._ends) - index
        self._window[:held] = self._window[count : count + held]
        self._window[held : held + count] = 0
        self._written = index
