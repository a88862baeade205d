"""Saving one call's session off the hot path, in order, latest state first.

The call hands its current record to `put` whenever it changes; `put` takes a snapshot and
returns at once. A background task saves snapshots one at a time, each with the version the
previous save returned; snapshots put while a save is in flight are coalesced, so only the latest
is written next. `flush` (at hangup) waits until the latest snapshot is stored.
"""

from __future__ import annotations

import asyncio
import logging

from opusagent.sessions.store import SessionRecord, SessionStore, StaleWriteError

log = logging.getLogger(__name__)


class SessionWriter:
    """One call's ordered, coalescing writer to `store`."""

    def __init__(self, store: SessionStore) -> None:
        self.store = store
        self.saved: SessionRecord | None = None
        """The last record stored, as the store returned it."""
        self._pending: SessionRecord | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def stopped(self) -> bool:
        """Whether a stale write stopped this writer (another server owns the call now)."""
        return self._stopped

    def put(self, record: SessionRecord) -> None:
        """Save a snapshot of `record` soon; never blocks.

        The first record's version is the one it was loaded at (0 for a new call); later
        versions come from the store, whatever the record says.
        """
        if self._stopped:
            return
        self._pending = record.model_copy(deep=True)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def flush(self) -> None:
        """Wait until the latest record put is stored (or its save failed and was logged)."""
        while (task := self._task) is not None and not task.done():
            await asyncio.shield(task)

    async def _run(self) -> None:
        while (record := self._pending) is not None:
            self._pending = None
            if self.saved is not None:
                record = record.model_copy(update={"version": self.saved.version})
            try:
                self.saved = await self.store.save(record)
            except StaleWriteError as exc:
                log.error("%s: another server owns this call now; this one stops saving it", exc)
                self._stopped = True
                self._pending = None
                return
            except Exception:
                log.exception(
                    "Session %r: could not save version %d", record.call_id, record.version + 1
                )
