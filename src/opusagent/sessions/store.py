"""What a session store keeps for each call, and the contract every store honours.

A store holds one `SessionRecord` per call id. Writes use optimistic concurrency: every record
carries the version it was read (or last saved) at, and `save` stores it only if the stored copy
still has that version, so a stale writer (say a server that lost the call to another one) can
never overwrite a newer state. Every write (re)starts the record's time to live.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from opusagent.agent.fsa.state import AgentState


class SessionRecord(BaseModel):
    """Everything needed to resume one call; JSON in and out (`model_dump_json`)."""

    model_config = ConfigDict(extra="forbid")

    call_id: str
    agent: str
    bridge: str
    media: dict[str, str]
    """Audio format per direction, e.g. {"inbound": "mulaw/8000", "outbound": "mulaw/8000"}."""
    state: AgentState
    heard_s: float = 0.0
    """Playback ledger position (seconds heard) of the current reply."""
    created_at: datetime
    updated_at: datetime
    ended: bool = False
    version: int = 0
    """Set by the store: 0 before the first save, 1 after it, +1 with each save after that."""

    @field_validator("created_at", "updated_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("must be timezone-aware (UTC)")
        return value.astimezone(UTC)


class StaleWriteError(Exception):
    """A save was refused: the stored record is not at the version the writer started from."""

    def __init__(self, call_id: str, expected: int, stored: int) -> None:
        super().__init__(
            f"Session {call_id!r}: refused a stale write from version {expected}; "
            f"the store holds version {stored}"
        )
        self.call_id = call_id
        self.expected = expected
        self.stored = stored


class SessionStoreUnavailable(Exception):  # noqa: N818 (the name the callers use)
    """The store could not be reached (connection refused, timed out or dropped)."""


class SessionStore(Protocol):
    """Where call sessions live between events and between processes."""

    async def load(self, call_id: str) -> SessionRecord | None:
        """The stored record of `call_id`, or None if there is none (or it expired)."""
        ...

    async def save(self, record: SessionRecord) -> SessionRecord:
        """Store `record` if the stored version equals `record.version` (0: nothing stored).

        Returns the record as stored, its version one higher; raises `StaleWriteError` when the
        stored version differs. Every write sets the record's time to live.
        """
        ...

    async def delete(self, call_id: str) -> None:
        """Forget `call_id` (nothing happens if it is not stored)."""
        ...

    def call_ids(self) -> AsyncIterator[str]:
        """Every stored call id, each once."""
        ...

    async def aclose(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


class RestorableStore(SessionStore, Protocol):
    """A store that can also take a copy of a record made elsewhere, version and all.

    `ResilientStore` uses it to move records between its primary and its fallback without
    renumbering them, so the writer's next save still finds the version it expects.
    """

    async def restore(self, record: SessionRecord) -> bool:
        """Store `record` unchanged unless the stored copy is at least as new.

        True when it was stored; False when the stored version is >= `record.version`.
        Sets the time to live like any write.
        """
        ...
