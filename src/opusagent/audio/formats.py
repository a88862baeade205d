"""Audio formats and the buffers that carry them across every boundary."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Encoding(enum.StrEnum):
    """Sample encodings spoken on the wire."""

    PCM16 = "pcm16"  # signed 16-bit little-endian linear PCM
    MULAW = "mulaw"  # G.711 mu-law, 8 bits per sample
    ALAW = "alaw"  # G.711 A-law, 8 bits per sample

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self is Encoding.PCM16 else 1


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What a buffer of audio bytes means: encoding, sample rate and channel count."""

    encoding: Encoding
    sample_rate: int
    channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.channels <= 0:
            raise ValueError(f"channels must be positive, got {self.channels}")

    @property
    def frame_bytes(self) -> int:
        """Bytes for one sample on every channel."""
        return self.encoding.bytes_per_sample * self.channels

    def bytes_for(self, seconds: float) -> int:
        """Whole-sample byte count for a duration, rounded to the nearest sample."""
        return round(seconds * self.sample_rate) * self.frame_bytes

    def samples_in(self, data: bytes | bytearray | memoryview) -> int:
        """Per-channel sample count of a buffer in this format."""
        return len(data) // self.frame_bytes

    def duration(self, data: bytes | bytearray | memoryview) -> float:
        """Seconds of audio held by a buffer in this format."""
        return self.samples_in(data) / self.sample_rate

    def __str__(self) -> str:
        layout = "mono" if self.channels == 1 else f"{self.channels}ch"
        return f"{self.encoding.value}/{self.sample_rate}Hz/{layout}"


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """Audio bytes together with their format; the unit that crosses boundaries."""

    data: bytes
    format: AudioFormat

    @property
    def duration(self) -> float:
        return self.format.duration(self.data)


MULAW_8K = AudioFormat(Encoding.MULAW, 8000)
ALAW_8K = AudioFormat(Encoding.ALAW, 8000)
PCM16_8K = AudioFormat(Encoding.PCM16, 8000)
PCM16_16K = AudioFormat(Encoding.PCM16, 16000)
PCM16_24K = AudioFormat(Encoding.PCM16, 24000)
