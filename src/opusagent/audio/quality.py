"""Streaming audio quality figures for a call: level, clipping, speech activity and SNR.

Memory is constant per call: running sums for whole-signal figures and a histogram of frame
energies (with the energy summed per bin) for the noise floor, speech activity and SNR.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from opusagent.call.stages import Samples

FLOOR_DBFS = -120.0
"""Reported instead of -inf for digital silence."""

_FULL_SCALE_SQ = 32768.0**2
_FLOOR_POWER = 10.0 ** (FLOOR_DBFS / 10.0)
_BIN_DB = 0.5
_BINS = int(-FLOOR_DBFS / _BIN_DB)
_NOISE_PERCENTILE = 0.10
_SPEECH_MARGIN_DB = 12.0
"""A frame is active when this far above the noise floor..."""
_SPEECH_MIN_DBFS = -60.0
"""...and above this absolute level, so faint line noise over digital silence is not speech."""
_CLIP_HIGH, _CLIP_LOW = 32766, -32767
"""Samples within one LSB of either rail count as clipped."""


def _db(power: float) -> float:
    """dBFS of a mean-square value, floored at `FLOOR_DBFS`."""
    if power <= 0.0:
        return FLOOR_DBFS
    return max(FLOOR_DBFS, 10.0 * math.log10(power / _FULL_SCALE_SQ))


@dataclass(frozen=True, slots=True)
class QualityFigures:
    """Quality of one stream; levels in dBFS, where a full-scale square wave is 0 dBFS."""

    rms_dbfs: float
    peak_dbfs: float
    clipping_ratio: float
    """Fraction of samples at (within one LSB of) full scale."""
    speech_ratio: float
    """Fraction of whole frames classified as active."""
    snr_db: float | None
    """Active-frame energy over the noise floor; None without speech or measurable noise."""
    seconds: float


class QualityMeter:
    """Accumulates quality figures over a stream of samples pushed in any chunking.

    Frame statistics cover whole frames only; a trailing partial frame counts for the level,
    peak and clipping figures but not for activity or SNR.
    """

    def __init__(self, sample_rate: int, frame_ms: int = 20) -> None:
        self.sample_rate = sample_rate
        self.frame_len = sample_rate * frame_ms // 1000
        if self.frame_len <= 0:
            raise ValueError(f"a {frame_ms} ms frame at {sample_rate} Hz holds no samples")
        self._count = 0
        self._sum_sq = 0.0
        self._peak = 0
        self._clipped = 0
        self._partial_sum = 0.0
        """Sum of squares of the samples so far in the incomplete frame."""
        self._partial_len = 0
        self._hist: npt.NDArray[np.int64] = np.zeros(_BINS, dtype=np.int64)
        self._hist_power: npt.NDArray[np.float64] = np.zeros(_BINS, dtype=np.float64)

    def push(self, samples: Samples) -> None:
        # A handful of numpy calls per push, whatever its length: this runs for every inbound
        # 20 ms frame of every call.
        count = len(samples)
        if count == 0:
            return
        self._count += count
        low, high = int(samples.min()), int(samples.max())
        self._peak = max(self._peak, -low, high)
        if high >= _CLIP_HIGH or low <= _CLIP_LOW:
            self._clipped += int(np.count_nonzero((samples >= _CLIP_HIGH) | (samples <= _CLIP_LOW)))
        # Squares of int16 summed in float64 are exact (below 2**53) in any order.
        values = samples.astype(np.float64)
        frame_len = self.frame_len
        start = 0
        if self._partial_len:
            start = min(frame_len - self._partial_len, count)
            head = values[:start]
            head_sum = float(np.dot(head, head))
            self._sum_sq += head_sum
            self._partial_sum += head_sum
            self._partial_len += start
            if self._partial_len < frame_len:
                return
            self._add_frame(self._partial_sum)
        whole = (count - start) // frame_len
        end = start + whole * frame_len
        if whole == 1:
            frame = values[start:end]
            frame_sum = float(np.dot(frame, frame))
            self._sum_sq += frame_sum
            self._add_frame(frame_sum)
        elif whole:
            frames = values[start:end].reshape(whole, frame_len)
            sums = np.einsum("ij,ij->i", frames, frames)
            self._sum_sq += float(sums.sum())
            self._add_frames(sums)
        tail = values[end:]
        self._partial_len = count - end
        self._partial_sum = float(np.dot(tail, tail)) if self._partial_len else 0.0
        self._sum_sq += self._partial_sum

    def _add_frame(self, frame_sum: float) -> None:
        """Add one whole frame to the histogram, given its sum of squares."""
        power = frame_sum / self.frame_len
        level = 10.0 * math.log10(max(power / _FULL_SCALE_SQ, _FLOOR_POWER))
        index = min(int((level - FLOOR_DBFS) / _BIN_DB), _BINS - 1)
        self._hist[index] += 1
        self._hist_power[index] += power

    def _add_frames(self, sums: npt.NDArray[np.float64]) -> None:
        """Add whole frames to the histogram, given each frame's sum of squares."""
        power = sums / self.frame_len
        level = 10.0 * np.log10(np.maximum(power / _FULL_SCALE_SQ, _FLOOR_POWER))
        # level >= FLOOR_DBFS already; np.minimum is much cheaper than np.clip on tiny arrays.
        bins = np.minimum(((level - FLOOR_DBFS) / _BIN_DB).astype(np.int64), _BINS - 1)
        self._hist += np.bincount(bins, minlength=_BINS)
        self._hist_power += np.bincount(bins, weights=power, minlength=_BINS)

    def figures(self) -> QualityFigures:
        seconds = self._count / self.sample_rate
        if self._count == 0:
            return QualityFigures(FLOOR_DBFS, FLOOR_DBFS, 0.0, 0.0, None, 0.0)
        rms = _db(self._sum_sq / self._count)
        peak = (
            FLOOR_DBFS if self._peak == 0 else max(FLOOR_DBFS, 20 * math.log10(self._peak / 32768))
        )
        clipping = self._clipped / self._count
        frames = int(self._hist.sum())
        if frames == 0:
            return QualityFigures(rms, peak, clipping, 0.0, None, seconds)
        noise_bin = int(np.searchsorted(np.cumsum(self._hist), _NOISE_PERCENTILE * frames))
        noise = _db(self._hist_power[noise_bin] / self._hist[noise_bin])
        threshold = max(noise + _SPEECH_MARGIN_DB, _SPEECH_MIN_DBFS)
        first_active = math.ceil((threshold - FLOOR_DBFS) / _BIN_DB)
        active = int(self._hist[first_active:].sum())
        snr = None
        if active and noise > FLOOR_DBFS:
            speech = _db(float(self._hist_power[first_active:].sum()) / active)
            snr = speech - noise
        return QualityFigures(rms, peak, clipping, active / frames, snr, seconds)
