"""The in-process session store: the default, and the fallback while Redis is down.

Records are kept as JSON, exactly as Redis would hold them, so a caller that changes its live
state after a save cannot change the stored copy, and both stores behave the same. Expiry uses
the event loop's clock. Every write moves its entry to the end of the dict with the same time to
live, so entries stay in expiry order and purging looks only at the expired ones at the front.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from opusagent.sessions.store import SessionRecord, StaleWriteError


class MemoryStore:
    """Session records in a dict, each expiring `ttl_s` seconds after its last write."""

    def __init__(self, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"ttl_s must be positive, not {ttl_s}")
        self.ttl_s = ttl_s
        self._entries: dict[str, tuple[float, int, str]] = {}
        """call id -> (expiry on the loop clock, version, record JSON), oldest write first."""

    async def load(self, call_id: str) -> SessionRecord | None:
        self._purge()
        entry = self._entries.get(call_id)
        return None if entry is None else SessionRecord.model_validate_json(entry[2])

    async def save(self, record: SessionRecord) -> SessionRecord:
        stored = self._stored_version(record.call_id)
        if stored != record.version:
            raise StaleWriteError(record.call_id, record.version, stored)
        saved = record.model_copy(update={"version": record.version + 1})
        self._write(saved)
        return saved

    async def restore(self, record: SessionRecord) -> bool:
        if self._stored_version(record.call_id) >= record.version:
            return False
        self._write(record)
        return True

    async def delete(self, call_id: str) -> None:
        self._entries.pop(call_id, None)

    async def call_ids(self) -> AsyncIterator[str]:
        self._purge()
        for call_id in list(self._entries):
            yield call_id

    async def aclose(self) -> None:
        self._entries.clear()

    def _stored_version(self, call_id: str) -> int:
        self._purge()
        entry = self._entries.get(call_id)
        return 0 if entry is None else entry[1]

    def _write(self, record: SessionRecord) -> None:
        self._entries.pop(record.call_id, None)
        expires = asyncio.get_running_loop().time() + self.ttl_s
        self._entries[record.call_id] = (expires, record.version, record.model_dump_json())

    def _purge(self) -> None:
        now = asyncio.get_running_loop().time()
        while self._entries:
            oldest = next(iter(self._entries))
            if self._entries[oldest][0] > now:
                return
            del self._entries[oldest]
