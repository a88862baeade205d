from __future__ import annotations

import numpy as np
import pytest

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.audio.resample import AudioConverter, StreamResampler
from opusagent.call.stages import Samples


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: float = 16000) -> Samples:
    t = np.arange(round(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def resample_in_frames(resampler: StreamResampler, samples: Samples) -> Samples:
    step = resampler.in_rate // 50
    parts = [resampler.process(samples[i : i + step]) for i in range(0, len(samples), step)]
    return np.concatenate([*parts, resampler.flush()])


def level_db(samples: Samples) -> float:
    x = samples.astype(np.float64)
    return float(10 * np.log10(np.mean(x**2) + 1e-12))


def test_tone_above_new_nyquist_is_strongly_attenuated() -> None:
    source = tone(6000, 16000)
    out = resample_in_frames(StreamResampler(16000, 8000), source)
    assert level_db(out[800:-800]) - level_db(source) < -40


def test_tone_in_passband_keeps_its_level() -> None:
    source = tone(1000, 16000)
    out = resample_in_frames(StreamResampler(16000, 8000), source)
    assert level_db(out[800:-800]) - level_db(source) == pytest.approx(0, abs=0.5)


def test_equal_rates_pass_samples_through() -> None:
    source = tone(1000, 8000)
    resampler = StreamResampler(8000, 8000)
    assert resampler.process(source) is source
    assert len(resampler.flush()) == 0


def test_flush_readies_the_resampler_for_a_new_stream() -> None:
    resampler = StreamResampler(8000, 16000)  # the polyphase path: exactly repeatable
    first = resample_in_frames(resampler, tone(500, 8000))
    second = resample_in_frames(resampler, tone(500, 8000))
    assert np.array_equal(first, second)


def test_flush_readies_the_soxr_resampler_for_a_new_stream() -> None:
    resampler = StreamResampler(22050, 8000)
    first = resample_in_frames(resampler, tone(500, 22050))
    second = resample_in_frames(resampler, tone(500, 22050))
    # soxr dithers its int16 output, so a reused stream differs from a fresh one by an LSB or two.
    assert np.abs(first.astype(np.int32) - second).max() <= 2


def test_unknown_quality_is_rejected() -> None:
    with pytest.raises(ValueError, match="quality"):
        StreamResampler(8000, 16000, quality="best")  # type: ignore[arg-type]


@pytest.mark.parametrize("channels", [(2, 1), (1, 2)])
def test_converter_rejects_multichannel_formats(channels: tuple[int, int]) -> None:
    src = AudioFormat(Encoding.PCM16, 8000, channels[0])
    dst = AudioFormat(Encoding.PCM16, 16000, channels[1])
    with pytest.raises(ValueError, match=r"pcm16/.*2ch"):
        AudioConverter(src, dst)


def test_converter_samples_output_needs_a_pcm16_destination() -> None:
    converter = AudioConverter(
        AudioFormat(Encoding.PCM16, 16000), AudioFormat(Encoding.MULAW, 8000)
    )
    with pytest.raises(ValueError, match="mulaw/8000Hz"):
        converter.to_samples(b"\x00\x00")


def test_converter_carries_a_dangling_pcm16_byte() -> None:
    fmt = AudioFormat(Encoding.PCM16, 8000)
    converter = AudioConverter(fmt, fmt)
    samples = np.array([0x1234, -0x1234, 7], dtype=np.int16)
    data = samples.astype("<i2").tobytes()
    parts = [
        converter.to_samples(data[:1]),
        converter.to_samples(data[1:4]),
        converter.to_samples(data[4:]),
    ]
    assert np.array_equal(np.concatenate(parts), samples)


def test_converter_same_format_bytes_pass_through() -> None:
    fmt = AudioFormat(Encoding.MULAW, 8000)
    assert AudioConverter(fmt, fmt).to_bytes(b"\x01\x02\x03") == b"\x01\x02\x03"


def test_converter_reset_drops_held_back_audio() -> None:
    converter = AudioConverter(
        AudioFormat(Encoding.PCM16, 8000), AudioFormat(Encoding.PCM16, 16000)
    )
    converter.to_samples(tone(500, 8000, 0.2).astype("<i2").tobytes() + b"\x01")
    converter.reset()
    assert len(converter.flush_samples()) == 0
