"""Speech probabilities to utterance start and end."""

from __future__ import annotations

import numpy as np

from opusagent.call.turn_policy import TurnPolicy
from opusagent.call.turns import TurnDetector, VoiceChange

POLICY = TurnPolicy(min_speech_ms=60, end_of_turn_silence_ms=100)


def feed(detector: TurnDetector, probabilities: list[float]) -> list[VoiceChange | None]:
    return [detector.update(p) for p in probabilities]


def test_speech_starts_after_the_minimum_speech() -> None:
    changes = feed(TurnDetector(POLICY, 0.02), [0.9, 0.9, 0.9])

    assert changes == [None, None, VoiceChange.STARTED]


def test_a_short_blip_does_not_start_speech() -> None:
    detector = TurnDetector(POLICY, 0.02)

    assert feed(detector, [0.9, 0.9, 0.1, 0.9, 0.9, 0.1]) == [None] * 6
    assert not detector.speaking


def test_speech_ends_after_the_end_of_turn_silence() -> None:
    detector = TurnDetector(POLICY, 0.02)
    feed(detector, [0.9] * 3)

    changes = feed(detector, [0.1] * 5)

    assert changes == [None, None, None, None, VoiceChange.ENDED]
    assert detector.trailing_silence_s == 0.1


def test_voiced_time_counts_only_speech_windows() -> None:
    detector = TurnDetector(POLICY, 0.02)
    feed(detector, [0.9] * 5 + [0.1] * 2 + [0.9] * 3)

    assert abs(detector.voiced_s - 0.16) < 1e-9


def test_threshold_is_inclusive() -> None:
    detector = TurnDetector(TurnPolicy(speech_threshold=0.5, min_speech_ms=0), 0.02)

    assert detector.update(0.5) is VoiceChange.STARTED


RATE = 16000
WINDOW_S = 0.032
LOUD = np.full(round(0.02 * RATE), 3000, np.int16)
"""A 20 ms frame of sound (about -21 dBFS)."""
QUIET = np.zeros(round(0.02 * RATE), np.int16)


def speaking_detector() -> TurnDetector:
    """A detector whose caller has spoken 10 VAD windows (320 ms, 16 frames of sound)."""
    detector = TurnDetector(TurnPolicy(min_speech_ms=0, end_of_turn_silence_ms=200), WINDOW_S)
    detector.update(0.9)
    for _ in range(16):
        detector.audio(LOUD)
    feed(detector, [0.9] * 9)
    return detector


def test_the_level_ends_the_turn_before_the_vad_has_heard_the_whole_silence() -> None:
    detector = speaking_detector()
    detector.update(0.1)  # the VAD has heard one quiet window: 352 ms
    changes = [detector.audio(QUIET) for _ in range(10)]  # 320 -> 520 ms of audio

    assert changes == [None] * 9 + [VoiceChange.ENDED]
    assert abs(detector.speech_end_s - 0.32) < 1e-9
    assert abs(detector.trailing_silence_s - 0.2) < 1e-9


def test_sound_the_vad_has_not_heard_holds_the_end_back() -> None:
    detector = speaking_detector()
    detector.update(0.1)
    changes = [detector.audio(frame) for frame in [QUIET] * 3 + [LOUD] + [QUIET] * 8]

    assert VoiceChange.ENDED not in changes


def test_without_audio_the_silence_is_counted_in_vad_windows() -> None:
    detector = TurnDetector(TurnPolicy(min_speech_ms=0, end_of_turn_silence_ms=200), WINDOW_S)
    feed(detector, [0.9] * 10)

    changes = feed(detector, [0.1] * 7)

    assert changes == [None] * 6 + [VoiceChange.ENDED]
    assert abs(detector.speech_end_s - 0.32) < 1e-9
