"""Call records: what happened on each call, stored in a SQL database once the call ends.

The database is any SQLAlchemy async URL: a SQLite file by default (aiosqlite), PostgreSQL with
the `postgres` extra (asyncpg). Its schema is the Alembic revisions in `migrations/`, brought to
the newest when the records are opened. Times are stored in UTC; a naive datetime, given in a
record or a filter, is taken as UTC.

The `calls` table has a column, indexed, for each filter of `CallRecords.search`, and JSON for
the rest of the record; `call_states` lists the states each call entered, so "calls that reached
state S" is an indexed lookup rather than a scan of every call's path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import (
    JSON,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    MetaData,
    Select,
    String,
    UniqueConstraint,
    delete,
    event,
    select,
)
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from opusagent.sessions.migrations import upgrade_to_head


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


# Infinities and NaN (the level of digital silence is -inf dBFS) are written as the strings
# "Infinity", "-Infinity" and "NaN": JSON has no such numbers and PostgreSQL refuses them.
MODEL_CONFIG = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class TranscriptLine(BaseModel):
    """One line of the conversation."""

    model_config = MODEL_CONFIG

    speaker: Literal["caller", "agent"]
    text: str
    dtmf: str = ""
    heard: str | None = None
    """For the agent: the words the caller heard, shorter than `text` when cut off."""
    interrupted: bool = False
    overlapped: bool = False
    at_s: float | None = None
    """Seconds from the start of the call."""


class CallRecordIn(BaseModel):
    """A finished call, as handed over to be stored."""

    model_config = MODEL_CONFIG

    call_id: str = Field(min_length=1)
    agent: str
    bridge: str
    caller: str | None
    called: str | None
    started_at: datetime
    ended_at: datetime
    end_reason: str
    outcome: str
    """e.g. "completed", "transferred", "abandoned", "error"."""
    final_state: str
    path: list[str]
    """Every state the agent entered, in order."""
    transcript: list[TranscriptLine]
    audit: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    quality: dict[str, float]
    turn_latencies_s: list[float]
    recording_path: str | None

    @field_validator("started_at", "ended_at")
    @classmethod
    def _in_utc(cls, moment: datetime) -> datetime:
        return as_utc(moment)

    @model_validator(mode="after")
    def _ends_after_it_starts(self) -> CallRecordIn:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self

    def states_reached(self) -> list[str]:
        """The path, ending in the final state (added when the path does not end there)."""
        if self.path and self.path[-1] == self.final_state:
            return list(self.path)
        return [*self.path, self.final_state]


class CallRecord(CallRecordIn):
    """A stored call."""

    id: int
    duration_s: float


# --- the schema ----------------------------------------------------------------------------


class UTCDateTime(TypeDecorator[datetime]):
    """A datetime stored as naive UTC (SQLite keeps no offset), read back aware, in UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_name)s",
            "uq": "uq_%(table_name)s_%(column_0_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class CallRow(Base):
    __tablename__ = "calls"
    __table_args__ = (UniqueConstraint("call_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[str] = mapped_column(String)
    agent: Mapped[str] = mapped_column(String, index=True)
    bridge: Mapped[str] = mapped_column(String)
    caller: Mapped[str | None] = mapped_column(String)
    called: Mapped[str | None] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    ended_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_s: Mapped[float] = mapped_column(Float)
    end_reason: Mapped[str] = mapped_column(String)
    outcome: Mapped[str] = mapped_column(String, index=True)
    final_state: Mapped[str] = mapped_column(String, index=True)
    path: Mapped[list[str]] = mapped_column(JSON)
    transcript: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    audit: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    tool_calls: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    quality: Mapped[dict[str, float]] = mapped_column(JSON)
    turn_latencies_s: Mapped[list[float]] = mapped_column(JSON)
    recording_path: Mapped[str | None] = mapped_column(String)


class CallStateRow(Base):
    """One state a call entered; `position` is its place on the call's path."""

    __tablename__ = "call_states"

    call_id: Mapped[str] = mapped_column(
        ForeignKey("calls.call_id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String, index=True)


# --- the repository ------------------------------------------------------------------------


class CallRecordsError(Exception):
    """The call records database cannot be used; the message says why."""


class CallRecords:
    """The stored calls of one database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str) -> CallRecords:
        """The records at `url`, its schema migrated to the newest revision first."""
        try:
            engine = create_async_engine(url)
        except ModuleNotFoundError as exc:
            raise CallRecordsError(
                f"The database driver {exc.name!r} is not installed (PostgreSQL needs the "
                "'postgres' extra: opusagent[postgres])."
            ) from None
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _enforce_foreign_keys)
        try:
            async with engine.begin() as connection:
                await connection.run_sync(upgrade_to_head)
        except BaseException:
            await engine.dispose()
            raise
        return cls(engine)

    async def add(self, record: CallRecordIn) -> CallRecord:
        """Store `record`; a call stored before under the same `call_id` is replaced."""
        values = {
            **json.loads(record.model_dump_json()),
            "started_at": record.started_at,
            "ended_at": record.ended_at,
            "duration_s": (record.ended_at - record.started_at).total_seconds(),
        }
        async with self._sessions.begin() as session:
            row = await session.scalar(select(CallRow).where(CallRow.call_id == record.call_id))
            if row is None:
                row = CallRow(**values)
                session.add(row)
            else:
                for name, value in values.items():
                    setattr(row, name, value)
                await session.execute(
                    delete(CallStateRow).where(CallStateRow.call_id == record.call_id)
                )
            await session.flush()
            session.add_all(
                CallStateRow(call_id=record.call_id, position=position, state=state)
                for position, state in enumerate(record.states_reached())
            )
        return _from_row(row)

    async def get(self, call_id: str) -> CallRecord | None:
        async with self._sessions() as session:
            row = await session.scalar(select(CallRow).where(CallRow.call_id == call_id))
        return None if row is None else _from_row(row)

    async def search(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        agent: str | None = None,
        outcome: str | None = None,
        state: str | None = None,
        limit: int = 100,
    ) -> list[CallRecord]:
        """Calls started from `since` (included) to `until` (excluded), newest first.

        `state` keeps the calls that entered that state at any point, not only those ending there.
        """
        query = _search_query(since, until, agent, outcome, state).limit(limit)
        async with self._sessions() as session:
            rows = (await session.scalars(query)).all()
        return [_from_row(row) for row in rows]

    async def aclose(self) -> None:
        await self._engine.dispose()


def _search_query(
    since: datetime | None,
    until: datetime | None,
    agent: str | None,
    outcome: str | None,
    state: str | None,
) -> Select[CallRow]:
    query = select(CallRow).order_by(CallRow.started_at.desc(), CallRow.id.desc())
    if since is not None:
        query = query.where(CallRow.started_at >= since)
    if until is not None:
        query = query.where(CallRow.started_at < until)
    if agent is not None:
        query = query.where(CallRow.agent == agent)
    if outcome is not None:
        query = query.where(CallRow.outcome == outcome)
    if state is not None:
        reached = select(CallStateRow.call_id).where(CallStateRow.state == state)
        query = query.where(CallRow.call_id.in_(reached))
    return query


def _from_row(row: CallRow) -> CallRecord:
    return CallRecord.model_validate(row, from_attributes=True)


def _enforce_foreign_keys(connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    """SQLite checks foreign keys only when asked, on each connection."""
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
