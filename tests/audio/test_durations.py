"""Acceptance: streaming conversion keeps duration and is independent of input chunking."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from opusagent.audio.codecs import decode, encode
from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.audio.resample import AudioConverter
from opusagent.call.stages import Samples

RATES = [8000, 16000, 22050, 24000]
SECONDS = 3.0
FRAME_SECONDS = 0.02

Chunker = Callable[[bytes, AudioFormat], Iterator[bytes]]


def speechlike(rate: int, seconds: float = SECONDS) -> Samples:
    """A sum of sines (within every rate's band) plus seeded noise."""
    t = np.arange(round(rate * seconds)) / rate
    tones = sum(a * np.sin(2 * np.pi * f * t) for f, a in [(220, 6000), (950, 4000), (2700, 2500)])
    noise = np.random.default_rng(7).normal(0, 800, t.size)
    return np.clip(tones + noise, -32768, 32767).astype(np.int16)


def frames_20ms(data: bytes, fmt: AudioFormat) -> Iterator[bytes]:
    size = fmt.bytes_for(FRAME_SECONDS)
    for i in range(0, len(data), size):
        yield data[i : i + size]


def random_sizes(data: bytes, fmt: AudioFormat) -> Iterator[bytes]:
    rng = np.random.default_rng(1234)
    i = 0
    while i < len(data):
        size = int(rng.integers(1, 4001))
        yield data[i : i + size]
        i += size


def odd_sizes(data: bytes, fmt: AudioFormat) -> Iterator[bytes]:
    """Odd sizes split PCM16 samples between chunks."""
    i = 0
    for size in itertools.cycle([333, 1, 77, 1001]):
        if i >= len(data):
            return
        yield data[i : i + size]
        i += size


def single(data: bytes, fmt: AudioFormat) -> Iterator[bytes]:
    yield data


CHUNKERS: dict[str, Chunker] = {
    "20ms": frames_20ms,
    "random": random_sizes,
    "odd": odd_sizes,
    "single": single,
}


def convert(src: AudioFormat, dst: AudioFormat, data: bytes, chunker: Chunker) -> Samples:
    """Run `data` through one converter and return the output as samples at dst's rate."""
    converter = AudioConverter(src, dst)
    if dst.encoding is Encoding.PCM16:
        parts = [converter.to_samples(chunk) for chunk in chunker(data, src)]
        parts.append(converter.flush_samples())
        return np.concatenate(parts)
    out = b"".join(converter.to_bytes(chunk) for chunk in chunker(data, src))
    return decode(out + converter.flush_bytes(), dst.encoding)


@pytest.mark.parametrize("chunking", list(CHUNKERS))
@pytest.mark.parametrize("dst_rate", RATES)
@pytest.mark.parametrize("src_rate", RATES)
@pytest.mark.parametrize("encoding", list(Encoding))
def test_output_duration_matches_input(
    encoding: Encoding, src_rate: int, dst_rate: int, chunking: str
) -> None:
    src, dst = AudioFormat(encoding, src_rate), AudioFormat(encoding, dst_rate)
    data = encode(speechlike(src_rate), encoding)

    out = convert(src, dst, data, CHUNKERS[chunking])

    assert len(out) / dst_rate == pytest.approx(src.duration(data), abs=FRAME_SECONDS)


@pytest.mark.parametrize("dst_rate", RATES)
@pytest.mark.parametrize("src_rate", RATES)
@pytest.mark.parametrize("encoding", list(Encoding))
def test_samples_output_duration_matches_input(
    encoding: Encoding, src_rate: int, dst_rate: int
) -> None:
    src, dst = AudioFormat(encoding, src_rate), AudioFormat(Encoding.PCM16, dst_rate)
    data = encode(speechlike(src_rate), encoding)

    out = convert(src, dst, data, random_sizes)

    assert len(out) / dst_rate == pytest.approx(src.duration(data), abs=FRAME_SECONDS)


@pytest.mark.parametrize("chunking", ["random", "odd", "single"])
@pytest.mark.parametrize("dst_rate", RATES)
@pytest.mark.parametrize("src_rate", RATES)
@pytest.mark.parametrize("encoding", list(Encoding))
def test_output_does_not_depend_on_chunking(
    encoding: Encoding, src_rate: int, dst_rate: int, chunking: str
) -> None:
    src, dst = AudioFormat(encoding, src_rate), AudioFormat(encoding, dst_rate)
    data = encode(speechlike(src_rate), encoding)

    reference = convert(src, dst, data, frames_20ms).astype(np.int32)
    other = convert(src, dst, data, CHUNKERS[chunking]).astype(np.int32)

    assert len(other) == len(reference)
    error = np.sqrt(np.mean((other - reference) ** 2.0))
    level = np.sqrt(np.mean(reference**2.0))
    # Only rounding differs: LSBs for PCM16, an occasional quantisation step for G.711.
    assert 20 * np.log10(error / level + 1e-12) < (-70 if encoding is Encoding.PCM16 else -45)
