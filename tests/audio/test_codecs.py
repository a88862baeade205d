from __future__ import annotations

import numpy as np
import pytest

from opusagent.audio.codecs import decode, encode, silence
from opusagent.audio.formats import AudioFormat, Encoding

RAMP = np.arange(-32768, 32768, 7, dtype=np.int16)


def test_pcm16_round_trip_is_exact() -> None:
    assert np.array_equal(decode(encode(RAMP, Encoding.PCM16), Encoding.PCM16), RAMP)


def test_pcm16_is_little_endian() -> None:
    assert encode(np.array([0x0102, -2], dtype=np.int16), Encoding.PCM16) == b"\x02\x01\xfe\xff"


def test_pcm16_decode_rejects_half_samples() -> None:
    with pytest.raises(ValueError, match="even byte count"):
        decode(b"\x00\x01\x02", Encoding.PCM16)


@pytest.mark.parametrize("encoding", [Encoding.MULAW, Encoding.ALAW])
def test_g711_encodes_one_byte_per_sample(encoding: Encoding) -> None:
    assert len(encode(RAMP, encoding)) == len(RAMP)


@pytest.mark.parametrize("encoding", [Encoding.MULAW, Encoding.ALAW])
def test_g711_round_trip_error_is_within_a_quantisation_step(encoding: Encoding) -> None:
    decoded = decode(encode(RAMP, encoding), encoding).astype(np.int32)
    error = np.abs(decoded - RAMP.astype(np.int32))
    # G.711 is logarithmic: the error grows with magnitude, up to ~5% of the value (mu-law also
    # clips above 32124).
    bound = np.maximum(np.abs(RAMP.astype(np.int32)) * 0.05, 16)
    assert np.all(error <= np.minimum(bound, 1024))


@pytest.mark.parametrize("encoding", [Encoding.MULAW, Encoding.ALAW])
def test_g711_round_trip_keeps_snr_above_30_db(encoding: Encoding) -> None:
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    decoded = decode(encode(tone, encoding), encoding).astype(np.float64)
    noise = np.mean((decoded - tone) ** 2)
    assert 10 * np.log10(np.mean(tone.astype(np.float64) ** 2) / noise) > 30


@pytest.mark.parametrize("encoding", list(Encoding))
def test_silence_decodes_to_near_zero(encoding: Encoding) -> None:
    fmt = AudioFormat(encoding, 8000)
    samples = decode(silence(fmt, 0.02), encoding)
    assert len(samples) == 160
    assert np.abs(samples).max() <= 8


@pytest.mark.parametrize(
    ("encoding", "byte"), [(Encoding.PCM16, 0x00), (Encoding.MULAW, 0xFF), (Encoding.ALAW, 0xD5)]
)
def test_silence_uses_the_encodings_silence_byte(encoding: Encoding, byte: int) -> None:
    data = silence(AudioFormat(encoding, 16000), 0.01)
    assert data == bytes([byte]) * 160 * encoding.bytes_per_sample
