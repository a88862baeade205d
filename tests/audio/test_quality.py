from __future__ import annotations

import numpy as np
import pytest

from opusagent.audio.quality import FLOOR_DBFS, QualityMeter
from opusagent.call.stages import Samples

RATE = 8000


def push_in_chunks(meter: QualityMeter, samples: Samples, size: int = 123) -> None:
    for i in range(0, len(samples), size):
        meter.push(samples[i : i + size])


def tone(seconds: float, amplitude: float, freq: float = 440) -> Samples:
    t = np.arange(round(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def noise(seconds: float, rms: float, seed: int = 0) -> Samples:
    return np.random.default_rng(seed).normal(0, rms, round(seconds * RATE)).astype(np.int16)


def test_full_scale_square_wave_clips() -> None:
    square = np.tile(np.repeat(np.array([32767, -32768], dtype=np.int16), 20), 400)
    meter = QualityMeter(RATE)
    push_in_chunks(meter, square)
    figures = meter.figures()

    assert figures.clipping_ratio == 1.0
    assert figures.peak_dbfs == pytest.approx(0.0, abs=0.01)
    assert figures.rms_dbfs == pytest.approx(0.0, abs=0.01)


def test_moderate_tone_does_not_clip_and_reads_its_level() -> None:
    meter = QualityMeter(RATE)
    push_in_chunks(meter, tone(1.0, 3276.8))  # -20 dBFS peak, -23 dBFS rms
    figures = meter.figures()

    assert figures.clipping_ratio == 0.0
    assert figures.peak_dbfs == pytest.approx(-20.0, abs=0.1)
    assert figures.rms_dbfs == pytest.approx(-23.0, abs=0.1)
    assert figures.seconds == 1.0


def test_noise_then_tone_gives_speech_ratio_and_snr() -> None:
    quiet = noise(3.0, 32.768)  # -60 dBFS line noise
    loud = tone(1.0, 3276.8) + noise(1.0, 32.768, seed=1)  # -23 dBFS
    meter = QualityMeter(RATE)
    push_in_chunks(meter, np.concatenate([quiet, loud, quiet]))
    figures = meter.figures()

    assert figures.speech_ratio == pytest.approx(1 / 7, abs=0.01)
    assert figures.snr_db == pytest.approx(37.0, abs=1.5)


def test_chunking_does_not_change_the_figures() -> None:
    signal = np.concatenate([noise(1.0, 30), tone(0.5, 8000), noise(1.0, 30)])
    one, many = QualityMeter(RATE), QualityMeter(RATE)
    one.push(signal)
    push_in_chunks(many, signal, size=7)
    assert one.figures() == many.figures()


def test_digital_silence_is_floored_and_has_no_snr() -> None:
    meter = QualityMeter(RATE)
    meter.push(np.zeros(RATE, dtype=np.int16))
    figures = meter.figures()

    assert figures.rms_dbfs == FLOOR_DBFS
    assert figures.peak_dbfs == FLOOR_DBFS
    assert figures.speech_ratio == 0.0
    assert figures.snr_db is None


def test_tone_over_digital_silence_is_speech_without_a_noise_estimate() -> None:
    meter = QualityMeter(RATE)
    meter.push(np.concatenate([np.zeros(RATE, dtype=np.int16), tone(1.0, 8000)]))
    figures = meter.figures()

    assert figures.speech_ratio == pytest.approx(0.5, abs=0.02)
    assert figures.snr_db is None


def test_no_audio_gives_empty_figures() -> None:
    figures = QualityMeter(RATE).figures()
    assert (figures.seconds, figures.speech_ratio, figures.snr_db) == (0.0, 0.0, None)
