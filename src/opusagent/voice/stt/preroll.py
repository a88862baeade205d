"""The audio kept while the caller is silent, so an utterance starts a little before the VAD
noticed it."""

from __future__ import annotations

from collections import deque

from opusagent.call.stages import Samples


class PreRoll:
    """The last `capacity` samples or a little more (whole pushed chunks are kept)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._chunks: deque[Samples] = deque()
        self._size = 0

    def push(self, samples: Samples) -> None:
        self._chunks.append(samples)
        self._size += len(samples)
        while self._chunks and self._size - len(self._chunks[0]) >= self.capacity:
            self._size -= len(self._chunks.popleft())

    def take(self) -> list[Samples]:
        """Everything kept, oldest first; the ring is left empty."""
        chunks = list(self._chunks)
        self._chunks.clear()
        self._size = 0
        return chunks
