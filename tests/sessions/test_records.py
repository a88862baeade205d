"""The call records repository on a real SQLite file and, where one can be started, a real
PostgreSQL server; and its Alembic migration against the models."""

from __future__ import annotations

import importlib.util
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from pydantic import ValidationError
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import create_async_engine

from opusagent.sessions.migrations import alembic_config
from opusagent.sessions.records import Base, CallRecord, CallRecords, CallRecordsError

from .records_samples import T0, record


def postgres_unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started for these tests; None when it can."""
    missing = [tool for tool in ("initdb", "pg_ctl") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not on PATH: install the Debian package 'postgresql' and "
            "put its bin directory (/usr/lib/postgresql/<version>/bin) on PATH"
        )
    if importlib.util.find_spec("asyncpg") is None:
        return "asyncpg is not installed: install the 'postgres' extra (opusagent[postgres])"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "initdb refuses to run as root and runuser (util-linux) is missing"
    return None


def as_server_user(command: list[str]) -> list[str]:
    """`command` as an unprivileged user when the tests run as root (initdb refuses root)."""
    return ["runuser", "-u", "nobody", "--", *command] if os.geteuid() == 0 else command


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL server of its own on loopback; yields its URL without a database name."""
    reason = postgres_unavailable()
    if reason is not None:
        pytest.skip(f"PostgreSQL path not tested: {reason}")
    data = Path(tempfile.mkdtemp(prefix="opusagent-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, user="nobody")
    subprocess.run(
        as_server_user(
            ["initdb", "-D", str(data), "-U", "opusagent", "--auth=trust", "-E", "UTF8"]
        ),
        check=True,
        capture_output=True,
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    options = f"-h 127.0.0.1 -p {port} -k {data}"
    pg_ctl = as_server_user(["pg_ctl", "-D", str(data), "-w", "-l", str(data / "server.log")])
    subprocess.run([*pg_ctl, "-o", options, "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+asyncpg://opusagent@127.0.0.1:{port}"
    finally:
        subprocess.run([*pg_ctl, "-m", "immediate", "stop"], check=False, capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    server: str = request.getfixturevalue("postgres")
    name = f"calls_{uuid.uuid4().hex}"
    admin = create_async_engine(f"{server}/postgres", isolation_level="AUTOCOMMIT")
    async with admin.connect() as connection:
        await connection.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return f"{server}/{name}"


@pytest.fixture
async def records(url: str) -> AsyncIterator[CallRecords]:
    opened = await CallRecords.open(url)
    yield opened
    await opened.aclose()


def ids(found: list[CallRecord]) -> list[str]:
    return [r.call_id for r in found]


# --- storing and reading -------------------------------------------------------------------


async def test_a_stored_call_reads_back_whole(records: CallRecords) -> None:
    given = record("CA1")

    stored = await records.add(given)
    read = await records.get("CA1")

    assert read == stored
    assert read is not None
    assert read.model_dump(exclude={"id", "duration_s"}) == given.model_dump()
    assert read.duration_s == 42.5
    assert read.started_at.tzinfo is not None
    assert read.started_at.utcoffset() == timedelta(0)
    assert read.transcript[0].heard == "Hello, how can"
    assert read.transcript[2].dtmf == "1234#"


async def test_infinite_and_undefined_figures_are_kept(records: CallRecords) -> None:
    quality = {"caller_rms_dbfs": float("-inf"), "peak": float("inf")}
    await records.add(record("CA1", quality=quality, turn_latencies_s=[float("nan")]))

    read = await records.get("CA1")

    assert read is not None
    assert read.quality == quality
    assert math.isnan(read.turn_latencies_s[0])


async def test_an_unknown_call_is_none(records: CallRecords) -> None:
    await records.add(record("CA1"))
    assert await records.get("CA2") is None


async def test_storing_a_call_again_replaces_it(records: CallRecords) -> None:
    first = await records.add(record("CA1", outcome="error", path=["greeting", "verify"]))
    again = await records.add(record("CA1", outcome="completed", path=["greeting", "goodbye"]))

    assert again.id == first.id
    assert await records.get("CA1") == again
    assert ids(await records.search()) == ["CA1"]
    assert await records.search(outcome="error") == []
    assert await records.search(state="verify") == []
    assert ids(await records.search(state="goodbye")) == ["CA1"]


async def test_records_outlive_the_connection(url: str) -> None:
    first = await CallRecords.open(url)
    await first.add(record("CA1"))
    await first.aclose()

    second = await CallRecords.open(url)
    try:
        assert (await second.get("CA1")) is not None
    finally:
        await second.aclose()


async def test_times_are_kept_in_utc(records: CallRecords) -> None:
    paris = timezone(timedelta(hours=1))
    await records.add(record("aware", started_at=T0.astimezone(paris), ended_at=T0 + timedelta(1)))
    await records.add(
        record("naive", started_at=T0.replace(tzinfo=None), ended_at=T0 + timedelta(1))
    )

    for call_id in ("aware", "naive"):
        read = await records.get(call_id)
        assert read is not None
        assert read.started_at == T0
        assert read.started_at.tzinfo == UTC


def test_a_call_cannot_end_before_it_starts() -> None:
    with pytest.raises(ValidationError, match="ended_at is before started_at"):
        record(ended_at=T0 - timedelta(seconds=1))


# --- searching -----------------------------------------------------------------------------


async def test_search_gives_the_newest_calls_first_up_to_the_limit(records: CallRecords) -> None:
    for minute, call_id in [(5, "CA5"), (1, "CA1"), (9, "CA9"), (3, "CA3")]:
        await records.add(record(call_id, at_minute=minute))

    assert ids(await records.search()) == ["CA9", "CA5", "CA3", "CA1"]
    assert ids(await records.search(limit=2)) == ["CA9", "CA5"]


async def test_search_by_time_includes_since_and_excludes_until(records: CallRecords) -> None:
    for minute in range(4):
        await records.add(record(f"CA{minute}", at_minute=minute))

    found = await records.search(since=T0 + timedelta(minutes=1), until=T0 + timedelta(minutes=3))

    assert ids(found) == ["CA2", "CA1"]


async def test_search_by_time_takes_naive_bounds_as_utc(records: CallRecords) -> None:
    await records.add(record("CA1", at_minute=1))
    since = (T0 + timedelta(minutes=1)).replace(tzinfo=None)

    assert ids(await records.search(since=since)) == ["CA1"]
    assert await records.search(until=since) == []


async def test_search_by_agent_and_outcome(records: CallRecords) -> None:
    await records.add(record("CA1", agent="bank_card", outcome="completed"))
    await records.add(record("CA2", agent="bank_card", outcome="transferred", at_minute=1))
    await records.add(record("CA3", agent="dentist", outcome="completed", at_minute=2))

    assert ids(await records.search(agent="bank_card")) == ["CA2", "CA1"]
    assert ids(await records.search(outcome="completed")) == ["CA3", "CA1"]
    assert ids(await records.search(agent="bank_card", outcome="completed")) == ["CA1"]


async def test_search_by_state_finds_calls_that_passed_through_it(records: CallRecords) -> None:
    await records.add(record("CA1", path=["greeting", "verify", "goodbye"]))
    await records.add(record("CA2", path=["greeting", "goodbye"], at_minute=1))
    await records.add(record("CA3", path=["greeting", "verify", "verify"], at_minute=2))

    assert ids(await records.search(state="verify")) == ["CA3", "CA1"]
    assert ids(await records.search(state="greeting")) == ["CA3", "CA2", "CA1"]
    assert await records.search(state="transfer") == []


async def test_the_final_state_counts_as_reached_off_the_path(records: CallRecords) -> None:
    await records.add(record("CA1", path=["greeting"], final_state="error"))
    await records.add(record("CA2", path=[], final_state="greeting", at_minute=1))

    assert ids(await records.search(state="error")) == ["CA1"]
    assert ids(await records.search(state="greeting")) == ["CA2", "CA1"]


# --- the schema ----------------------------------------------------------------------------


def _schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


async def test_the_migration_builds_exactly_the_models_schema(url: str) -> None:
    await (await CallRecords.open(url)).aclose()

    engine = create_async_engine(url)
    async with engine.connect() as connection:
        differences = await connection.run_sync(_schema_differences)
        revision = await connection.run_sync(_revision)
        state_indexes = await connection.run_sync(
            lambda sync: inspect(sync).get_indexes("call_states")
        )
    await engine.dispose()

    assert differences == []
    assert revision == ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert [index["column_names"] for index in state_indexes] == [["state"]]


async def test_a_missing_database_driver_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg now fails: not installed

    with pytest.raises(CallRecordsError, match=r"'asyncpg' is not installed.*postgres"):
        await CallRecords.open("postgresql+asyncpg://localhost/calls")


async def test_a_database_it_cannot_open_is_the_drivers_error(tmp_path: Path) -> None:
    with pytest.raises(OperationalError, match="unable to open database file"):
        await CallRecords.open(f"sqlite+aiosqlite:///{tmp_path / 'no' / 'such' / 'calls.db'}")
