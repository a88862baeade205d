"""Cut a byte stream, chunked any which way, into exact fixed-duration frames."""

from __future__ import annotations

from opusagent.audio.codecs import Buffer, silence_byte
from opusagent.audio.formats import AudioFormat


class Framer:
    """Re-chunks audio bytes into frames of `frame_ms` (20 ms is the telephony norm).

    At most one partial frame is buffered, so each byte is copied at most twice whatever the
    input chunking.
    """

    def __init__(self, fmt: AudioFormat, frame_ms: int = 20) -> None:
        if frame_ms <= 0:
            raise ValueError(f"frame_ms must be positive, got {frame_ms}")
        self.format = fmt
        self.frame_ms = frame_ms
        self.frame_bytes = fmt.bytes_for(frame_ms / 1000)
        if self.frame_bytes == 0:
            raise ValueError(f"{frame_ms} ms is shorter than one sample of {fmt}")
        self._partial = bytearray()

    @property
    def pending_bytes(self) -> int:
        """Bytes held back waiting to complete a frame."""
        return len(self._partial)

    def push(self, data: Buffer) -> list[bytes]:
        """Add bytes; return every frame they complete, in order."""
        size = self.frame_bytes
        frames: list[bytes] = []
        with memoryview(data) as view:
            start = 0
            if self._partial:
                start = min(size - len(self._partial), len(view))
                self._partial += view[:start]
                if len(self._partial) < size:
                    return frames
                frames.append(bytes(self._partial))
                self._partial.clear()
            end = start + (len(view) - start) // size * size
            frames.extend(bytes(view[i : i + size]) for i in range(start, end, size))
            self._partial += view[end:]
        return frames

    def flush(self, pad: bool = True) -> bytes | None:
        """End of stream: the partial frame, padded with silence to a full frame when `pad`."""
        if not self._partial:
            return None
        rest = bytes(self._partial)
        self._partial.clear()
        if pad:
            rest += bytes([silence_byte(self.format.encoding)]) * (self.frame_bytes - len(rest))
        return rest

    def reset(self) -> None:
        """Drop the partial frame (e.g. when playback is cut on barge-in)."""
        self._partial.clear()
