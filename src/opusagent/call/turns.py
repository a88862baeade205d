"""Turns caller speech probabilities, refined by the audio's level, into the start and end of
caller utterances.

The VAD decides whether the caller speaks, one probability per window (32 ms for Silero). Its
windows alone would place the end of an utterance late: the end of the last voiced window is up
to a window after the last sound, and the model's recurrent state keeps the probability high for
a window or so after it. So while the caller speaks, the detector also follows the level of the
audio itself in short blocks (`audio`): the utterance ends at the last block within
`LOUD_BELOW_PEAK_DB` of the utterance's loudest, and the turn is over once `end_of_turn_silence`
has passed after that, as far as the audio received shows: the VAD's windows where it has
answered, the level of each block beyond them where it has not yet. A loud block there holds the
decision back until the VAD has heard it, and a voiced window cancels it. Without `audio`, the
detector counts the silence in VAD windows only, from the end of the last voiced window.
"""

from __future__ import annotations

import enum

import numpy as np

from opusagent.call.stages import Samples
from opusagent.call.turn_policy import TurnPolicy

BLOCK_S = 0.005
"""Level resolution: the end of speech is placed to within one block."""
LOUD_BELOW_PEAK_DB = 40.0
"""A block this far below the utterance's loudest block still counts as speech (quiet final
consonants are ~30-40 dB below the vowels)..."""
LOUD_MIN_DBFS = -60.0
"""...if it is above this absolute level, so line noise over digital silence never does."""
MAX_PULL_BACK_WINDOWS = 2
"""The level may place the end at most this many windows before the end of the last voiced
window (the VAD's lag), never after it."""

_FULL_SCALE_SQ = 32768.0**2
_LOUD_RATIO = 10.0 ** (-LOUD_BELOW_PEAK_DB / 10.0)
_MIN_POWER = _FULL_SCALE_SQ * 10.0 ** (LOUD_MIN_DBFS / 10.0)


class VoiceChange(enum.Enum):
    STARTED = "started"
    ENDED = "ended"


class TurnDetector:
    """Speech starts after `min_speech_ms` of voiced windows; ends after the end-of-turn silence.

    Times are stream times: seconds of audio at the VAD's rate since the stream began, as the
    VAD reports them (window `k` ends at `k * window_s`) and as `audio` receives them.
    """

    __slots__ = (
        "_audio_s",
        "_block",
        "_block_s",
        "_end_s",
        "_end_silence_s",
        "_last_loud_s",
        "_last_voiced_s",
        "_min_speech_s",
        "_peak_power",
        "_rate",
        "_run_s",
        "_silent",
        "_threshold",
        "_trailing_s",
        "_vad_s",
        "_window_s",
        "speaking",
        "voiced_s",
    )

    def __init__(self, policy: TurnPolicy, window_s: float, sample_rate: int = 16000) -> None:
        self._threshold = policy.speech_threshold
        self._min_speech_s = policy.min_speech_ms / 1000
        self._end_silence_s = policy.end_of_turn_silence_ms / 1000
        self._window_s = window_s
        self._rate = sample_rate
        self._block = max(1, round(BLOCK_S * sample_rate))
        self._block_s = self._block / sample_rate
        self._run_s = 0.0
        self._vad_s = 0.0
        """Stream time up to which the VAD has answered."""
        self._audio_s = 0.0
        """Stream time up to which `audio` has received samples."""
        self._last_voiced_s = 0.0
        """End of the last voiced window."""
        self._last_loud_s: float | None = None
        """End of the last loud block of this utterance (None: no level known)."""
        self._peak_power = 0.0
        self._silent = False
        """Speaking, and a quiet window has come after the last voiced one."""
        self._end_s = 0.0
        """Where the utterance ended, once `_silent`."""
        self._trailing_s = 0.0
        """The silence that ended the last utterance."""
        self.speaking = False
        self.voiced_s = 0.0
        """Voiced seconds in the current utterance, counted from its first voiced window."""

    @property
    def speech_end_s(self) -> float:
        """Stream time at which the current (or last) utterance ended."""
        return self._end_s

    @property
    def trailing_silence_s(self) -> float:
        """Silence heard after the utterance's end so far; after `ENDED`, the silence that
        ended it."""
        return max(0.0, self._heard_s() - self._end_s) if self._silent else self._trailing_s

    def update(self, probability: float) -> VoiceChange | None:
        """Feed one window's speech probability; returns a change when one happens."""
        w = self._window_s
        self._vad_s += w
        if probability >= self._threshold:
            self._last_voiced_s = self._vad_s
            self._silent = False
            if self.speaking:
                self.voiced_s += w
                return None
            self._run_s += w
            if self._run_s + 1e-9 >= self._min_speech_s:
                self.speaking = True
                self.voiced_s = self._run_s
                self._last_loud_s = None
                self._peak_power = 0.0
                return VoiceChange.STARTED
            return None
        if not self.speaking:
            self._run_s = 0.0
            return None
        if not self._silent:
            self._silent = True
            self._end_s = self._utterance_end()
        return self._check_end()

    def audio(self, samples: Samples) -> VoiceChange | None:
        """Feed the samples the VAD is given, as they arrive; returns `ENDED` when the silence
        after the utterance is complete before the VAD has heard all of it."""
        start = self._audio_s
        self._audio_s += len(samples) / self._rate
        if not self.speaking:
            return None
        block = self._block
        count = len(samples) // block
        if count:
            # Three numpy calls per chunk; the few blocks are then plain floats.
            blocks = samples[: count * block].astype(np.float64).reshape(count, block)
            sums: list[float] = np.einsum("ij,ij->i", blocks, blocks).tolist()
            peak = max(sums) / block
            if peak > self._peak_power:
                self._peak_power = peak
            floor = max(self._peak_power * _LOUD_RATIO, _MIN_POWER) * block
            for i in range(count - 1, -1, -1):
                if sums[i] >= floor:
                    self._last_loud_s = start + (i + 1) * self._block_s
                    break
        return self._check_end() if self._silent else None

    def _utterance_end(self) -> float:
        """The end of speech: the last loud block, within the VAD's lag of its last voiced
        window."""
        voiced = self._last_voiced_s
        if self._last_loud_s is None:
            return voiced
        earliest = voiced - MAX_PULL_BACK_WINDOWS * self._window_s
        return min(voiced, max(self._last_loud_s, earliest))

    def _heard_s(self) -> float:
        """How far the silence is known: the VAD's windows, then the audio beyond them if no
        loud block came after them."""
        loud = self._last_loud_s
        if self._audio_s > self._vad_s and loud is not None and loud <= self._vad_s:
            return self._audio_s
        return self._vad_s

    def _check_end(self) -> VoiceChange | None:
        silence = self._heard_s() - self._end_s
        if silence + 1e-9 < self._end_silence_s:
            return None
        self._trailing_s = silence
        self.speaking = False
        self._silent = False
        self._run_s = 0.0
        return VoiceChange.ENDED
