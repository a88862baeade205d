from __future__ import annotations

import numpy as np
import pytest

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.audio.framer import Framer

MULAW = AudioFormat(Encoding.MULAW, 8000)
PCM16 = AudioFormat(Encoding.PCM16, 16000)


def stream(length: int) -> bytes:
    return np.random.default_rng(3).integers(0, 256, length, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fmt", [MULAW, PCM16], ids=str)
def test_frames_are_exact_for_any_chunking(fmt: AudioFormat, seed: int) -> None:
    data = stream(10_007)
    rng = np.random.default_rng(seed)
    framer = Framer(fmt)
    frames: list[bytes] = []
    i = 0
    while i < len(data):
        size = int(rng.integers(0, 1500))
        frames += framer.push(data[i : i + size])
        i += size

    size = fmt.bytes_for(0.02)
    assert all(len(frame) == size for frame in frames)
    assert b"".join(frames) == data[: len(frames) * size]
    assert framer.pending_bytes == len(data) % size


def test_frame_size_follows_format_and_duration() -> None:
    assert Framer(MULAW).frame_bytes == 160
    assert Framer(PCM16, frame_ms=30).frame_bytes == 960


def test_large_push_returns_every_complete_frame() -> None:
    framer = Framer(MULAW)
    assert len(framer.push(stream(160 * 50 + 3))) == 50
    assert framer.pending_bytes == 3


@pytest.mark.parametrize(
    ("fmt", "byte"),
    [(MULAW, 0xFF), (AudioFormat(Encoding.ALAW, 8000), 0xD5), (PCM16, 0x00)],
    ids=str,
)
def test_flush_pads_the_remainder_with_silence(fmt: AudioFormat, byte: int) -> None:
    framer = Framer(fmt)
    framer.push(b"\x01\x02\x03\x04")
    last = framer.flush()
    assert last == b"\x01\x02\x03\x04" + bytes([byte]) * (framer.frame_bytes - 4)
    assert framer.pending_bytes == 0


def test_flush_without_padding_returns_the_bare_remainder() -> None:
    framer = Framer(MULAW)
    framer.push(b"\x01\x02\x03")
    assert framer.flush(pad=False) == b"\x01\x02\x03"


def test_flush_of_an_empty_framer_is_none() -> None:
    framer = Framer(MULAW)
    framer.push(stream(320))
    assert framer.flush() is None


def test_reset_drops_the_remainder() -> None:
    framer = Framer(MULAW)
    framer.push(b"\xaa" * 100)
    framer.reset()
    assert framer.pending_bytes == 0
    assert framer.push(b"\xbb" * 160) == [b"\xbb" * 160]
