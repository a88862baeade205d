"""G.711 and linear PCM: wire bytes to mono int16 samples and back.

G.711 goes through `audioop` (the stdlib module on Python 3.11/3.12, the `audioop-lts` package
under the same name on 3.13+). `audioop` works on native-endian samples, while PCM16 on the wire is
little-endian, so only the PCM16 path deals with byte order.
"""

from __future__ import annotations

import warnings

import numpy as np

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.call.stages import Samples

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

Buffer = bytes | bytearray | memoryview
"""Any contiguous byte buffer accepted by the decoders."""

_PCM16_LE = np.dtype("<i2")

_SILENCE_BYTE = {
    Encoding.PCM16: 0x00,
    Encoding.MULAW: 0xFF,  # mu-law 0xFF decodes to exactly 0
    Encoding.ALAW: 0xD5,  # A-law has no zero code; 0xD5 decodes to +8, the smallest magnitude
}


def silence_byte(encoding: Encoding) -> int:
    """The byte value that, repeated, is silence in this encoding."""
    return _SILENCE_BYTE[encoding]


def silence(fmt: AudioFormat, seconds: float) -> bytes:
    """`seconds` of silence in `fmt`, rounded to whole samples."""
    return bytes([_SILENCE_BYTE[fmt.encoding]]) * fmt.bytes_for(seconds)


def decode(data: Buffer, encoding: Encoding) -> Samples:
    """Decode wire bytes to mono int16 samples.

    The result may be a read-only view of `data` (PCM16 on little-endian hosts): copy it before
    writing into it. PCM16 input must hold whole samples (an even number of bytes).
    """
    if encoding is Encoding.PCM16:
        if len(data) % 2:
            raise ValueError(f"PCM16 data must have an even byte count, got {len(data)}")
        return np.frombuffer(data, dtype=_PCM16_LE).astype(np.int16, copy=False)
    if encoding is Encoding.MULAW:
        linear: bytes = audioop.ulaw2lin(data, 2)
    else:
        linear = audioop.alaw2lin(data, 2)
    return np.frombuffer(linear, dtype=np.int16)


def encode(samples: Samples, encoding: Encoding) -> bytes:
    """Encode mono int16 samples to wire bytes."""
    if encoding is Encoding.PCM16:
        return samples.astype(_PCM16_LE, copy=False).tobytes()
    native = samples.tobytes()
    if encoding is Encoding.MULAW:
        encoded: bytes = audioop.lin2ulaw(native, 2)
    else:
        encoded = audioop.lin2alaw(native, 2)
    return encoded
