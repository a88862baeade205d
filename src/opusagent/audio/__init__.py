"""Audio core: formats, codecs, streaming resampling, framing, pacing, recording, quality."""

from opusagent.audio.formats import (
    ALAW_8K,
    MULAW_8K,
    PCM16_8K,
    PCM16_16K,
    PCM16_24K,
    AudioChunk,
    AudioFormat,
    Encoding,
)

__all__ = [
    "ALAW_8K",
    "MULAW_8K",
    "PCM16_8K",
    "PCM16_16K",
    "PCM16_24K",
    "AudioChunk",
    "AudioFormat",
    "Encoding",
]
