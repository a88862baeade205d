"""Speech probabilities to utterance start and end."""

from __future__ import annotations

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
