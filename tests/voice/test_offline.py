"""Whole-file speech helpers: utterances found by the real VAD, phone-line audio."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from opusagent.call.turn_policy import TurnPolicy
from opusagent.voice.offline import find_utterances, resample, telephone
from opusagent.voice.vad import SileroVAD

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]


def test_find_utterances_splits_at_pauses_longer_than_the_end_of_turn(speak: Speak) -> None:
    first, rate = speak("I lost my card")
    second, _ = speak("and I need a new one")
    gap = np.zeros(rate, np.int16)  # 1 s: longer than the 500 ms end of turn
    audio = resample(np.concatenate([gap, first, gap, second, gap]), rate, 16000)

    segments = find_utterances(audio, SileroVAD(), TurnPolicy())

    assert len(segments) == 2
    first_end = (rate + len(first)) / rate
    assert abs(segments[0].start - 1.0) < 0.15
    assert abs(segments[0].end - first_end) < 0.3
    assert segments[1].start > first_end + 0.5


def test_telephone_narrows_to_8_khz_mu_law_and_keeps_the_duration() -> None:
    tone = (8000 * np.sin(2 * np.pi * 440 * np.arange(22050) / 22050)).astype(np.int16)

    narrow = telephone(tone, 22050)

    assert abs(len(narrow) - 8000) <= 1
    assert 0.9 < np.sqrt(np.mean(narrow.astype(float) ** 2)) / (8000 / np.sqrt(2)) < 1.1
