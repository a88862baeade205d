"""A session store that keeps calls going while its primary (Redis) is down.

When the primary fails, loads and saves are served by an in-process fallback and ONE warning is
logged for the whole outage; `failures` counts every primary call that failed. The primary is
tried again at most every `retry_s`. When it answers, every record changed during the outage is
written through with its version unchanged (newer version wins: a record whose primary copy is
at least as new, e.g. written by another server meanwhile, is left alone, and this server's next
save of it is refused as stale) before the primary serves anything again.

While records wait to be written through, a background task keeps retrying, so they reach the
primary even if no call touches the store any more; `aclose` makes a last attempt. During an
outage a load sees only the records saved during that outage.

A save that finds the primary holding an OLDER version than the writer's is not stale: versions
only grow, so the primary lost data (e.g. Redis restarted without persistence between two saves,
too quickly for anyone to notice an outage). The record is written back instead of refused.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from opusagent.sessions.memory import MemoryStore
from opusagent.sessions.store import (
    RestorableStore,
    SessionRecord,
    SessionStoreUnavailable,
    StaleWriteError,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

FALLBACK_TTL_S = 3600.0
"""Time to live of the default in-process fallback's records."""


@dataclass(frozen=True, slots=True)
class _Answer(Generic[T]):
    """What the primary returned (None stands for "the primary did not answer")."""

    value: T


class ResilientStore:
    """`primary` while it answers, `fallback` while it does not, with write-through on return."""

    def __init__(
        self,
        primary: RestorableStore,
        fallback: RestorableStore | None = None,
        *,
        retry_s: float = 1.0,
    ) -> None:
        self.primary = primary
        self.fallback: RestorableStore = (
            fallback if fallback is not None else MemoryStore(FALLBACK_TTL_S)
        )
        self.retry_s = retry_s
        self.failures = 0
        """Primary calls that failed (connection refused, timed out or dropped)."""
        self._outage = False
        self._retry_at = 0.0
        self._changed: set[str] = set()
        """Calls saved to the fallback during the outage, to write through."""
        self._deleted: set[str] = set()
        """Calls deleted during the outage, to delete from the primary."""
        self._lock = asyncio.Lock()
        """Held while the fallback is written or the outage's changes are written through."""
        self._retrying: asyncio.Task[None] | None = None

    @property
    def degraded(self) -> bool:
        """Whether the primary is not answering (calls are served from the fallback)."""
        return self._outage

    async def load(self, call_id: str) -> SessionRecord | None:
        if (answer := await self._ask_primary(lambda: self.primary.load(call_id))) is not None:
            return answer.value
        return await self.fallback.load(call_id)

    async def save(self, record: SessionRecord) -> SessionRecord:
        if (answer := await self._ask_primary(lambda: self._save_primary(record))) is not None:
            return answer.value
        async with self._lock:
            held = await self.fallback.load(record.call_id)
            if held is None or held.version < record.version:
                # First save of this call in the outage: the writer's version is the truth.
                await self.fallback.restore(record)
            saved = await self.fallback.save(record)
            self._changed.add(record.call_id)
            self._deleted.discard(record.call_id)
        self._keep_retrying()
        return saved

    async def delete(self, call_id: str) -> None:
        if await self._ask_primary(lambda: self.primary.delete(call_id)) is not None:
            return
        async with self._lock:
            await self.fallback.delete(call_id)
            self._changed.discard(call_id)
            self._deleted.add(call_id)
        self._keep_retrying()

    async def call_ids(self) -> AsyncIterator[str]:
        seen: set[str] = set()
        if await self._primary_usable():
            try:
                async for call_id in self.primary.call_ids():
                    seen.add(call_id)
                    yield call_id
            except SessionStoreUnavailable as exc:
                self._failed(exc)
            else:
                self._answered()
                return
        async for call_id in self.fallback.call_ids():
            if call_id not in seen:
                yield call_id

    async def aclose(self) -> None:
        """Make a last attempt to write the outage's changes through, then close both stores."""
        if self._retrying is not None:
            self._retrying.cancel()
        pending = len(self._changed | self._deleted)
        if pending:
            self._retry_at = 0.0
            async with self._lock:
                if not await self._write_through():
                    log.warning("Session store closed with %d session(s) not written", pending)
        await self.primary.aclose()
        await self.fallback.aclose()

    async def _save_primary(self, record: SessionRecord) -> SessionRecord:
        try:
            return await self.primary.save(record)
        except StaleWriteError as exc:
            if exc.stored >= exc.expected:
                raise
            # Versions only grow, so an older stored copy means the primary lost data.
            log.warning(
                "Session %s: the session store holds version %d, older than this call's %d "
                "(it lost data, e.g. restarted without persistence); writing the call back",
                record.call_id,
                exc.stored,
                exc.expected,
            )
        await self.primary.restore(record)
        return await self.primary.save(record)

    async def _ask_primary(self, call: Callable[[], Awaitable[T]]) -> _Answer[T] | None:
        """The primary's answer to `call()`, or None when it is down (call the fallback)."""
        if not await self._primary_usable():
            return None
        try:
            value = await call()
        except SessionStoreUnavailable as exc:
            self._failed(exc)
            return None
        self._answered()
        return _Answer(value)

    async def _primary_usable(self) -> bool:
        """Whether to try the primary now; the outage's changes are written through first."""
        if self._outage and self._now() < self._retry_at:
            return False
        if not (self._changed or self._deleted):
            return True
        async with self._lock:
            return await self._write_through()

    async def _write_through(self) -> bool:
        """With the lock held: move the outage's changes to the primary; False if it is down."""
        if not (self._changed or self._deleted):
            return True
        if self._outage and self._now() < self._retry_at:
            return False
        written = 0
        try:
            for call_id in list(self._deleted):
                await self.primary.delete(call_id)
                self._deleted.discard(call_id)
            for call_id in list(self._changed):
                record = await self.fallback.load(call_id)
                if record is not None:
                    if await self.primary.restore(record):
                        written += 1
                    else:
                        log.warning(
                            "Session %s: the session store holds a copy at least as new as "
                            "version %d written during the outage; kept it",
                            call_id,
                            record.version,
                        )
                await self.fallback.delete(call_id)
                self._changed.discard(call_id)
        except SessionStoreUnavailable as exc:
            self._failed(exc)
            return False
        if written:
            log.info("Session store: wrote through %d session(s) kept during the outage", written)
        self._answered()
        return True

    def _keep_retrying(self) -> None:
        if self._retrying is None or self._retrying.done():
            self._retrying = asyncio.get_running_loop().create_task(self._retry_until_written())
            self._retrying.add_done_callback(_log_crash)

    async def _retry_until_written(self) -> None:
        while self._changed or self._deleted:
            await asyncio.sleep(max(0.0, self._retry_at - self._now()))
            async with self._lock:
                await self._write_through()

    def _failed(self, exc: SessionStoreUnavailable) -> None:
        self.failures += 1
        self._retry_at = self._now() + self.retry_s
        if not self._outage:
            self._outage = True
            log.warning(
                "Calls go on with in-process session state, written through when the session "
                "store answers again: %s",
                exc,
            )

    def _answered(self) -> None:
        if self._outage:
            self._outage = False
            log.info("Session store answers again")

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("Session store write-through stopped", exc_info=exc)
