"""Turns caller speech probabilities into the start and end of caller utterances."""

from __future__ import annotations

import enum

from opusagent.call.turn_policy import TurnPolicy


class VoiceChange(enum.Enum):
    STARTED = "started"
    ENDED = "ended"


class TurnDetector:
    """Speech starts after `min_speech_ms` of voiced windows; ends after the end-of-turn silence."""

    __slots__ = (
        "_end_silence_s",
        "_min_speech_s",
        "_run_s",
        "_silence_s",
        "_threshold",
        "_window_s",
        "speaking",
        "voiced_s",
    )

    def __init__(self, policy: TurnPolicy, window_s: float) -> None:
        self._threshold = policy.speech_threshold
        self._min_speech_s = policy.min_speech_ms / 1000
        self._end_silence_s = policy.end_of_turn_silence_ms / 1000
        self._window_s = window_s
        self._run_s = 0.0
        self._silence_s = 0.0
        self.speaking = False
        self.voiced_s = 0.0
        """Voiced seconds in the current utterance, counted from its first voiced window."""

    @property
    def trailing_silence_s(self) -> float:
        return self._silence_s

    def update(self, probability: float) -> VoiceChange | None:
        """Feed one window's speech probability; returns a change when one happens."""
        w = self._window_s
        if probability >= self._threshold:
            self._silence_s = 0.0
            if self.speaking:
                self.voiced_s += w
                return None
            self._run_s += w
            if self._run_s + 1e-9 >= self._min_speech_s:
                self.speaking = True
                self.voiced_s = self._run_s
                return VoiceChange.STARTED
            return None
        if not self.speaking:
            self._run_s = 0.0
            return None
        self._silence_s += w
        if self._silence_s + 1e-9 >= self._end_silence_s:
            self.speaking = False
            self._run_s = 0.0
            return VoiceChange.ENDED
        return None
