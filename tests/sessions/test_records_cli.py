"""`opusagent calls list|show` on call records in a SQLite file named by `database_url`."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from opusagent.sessions.records import CallRecord, CallRecordIn, CallRecords
from opusagent.sessions.records_cli import calls_app

from .records_samples import record

runner = CliRunner()


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The URL of an empty call records file, set as `database_url`."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}"
    asyncio.run(store(url))
    monkeypatch.setenv("OPUSAGENT_DATABASE_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    return url


async def store(url: str, *records: CallRecordIn) -> list[CallRecord]:
    opened = await CallRecords.open(url)
    try:
        return [await opened.add(given) for given in records]
    finally:
        await opened.aclose()


def calls(*args: str) -> Result:
    return runner.invoke(calls_app, list(args))


def listed(result: Result) -> list[str]:
    """The call ids of the table's rows, in order."""
    assert result.exit_code == 0, result.output
    return [line.split("│")[2].strip() for line in result.output.splitlines() if "│ 2025" in line]


# --- list ----------------------------------------------------------------------------------


def test_list_shows_the_calls_newest_first(database: str) -> None:
    asyncio.run(store(database, record("CA1"), record("CA2", at_minute=1, agent="dentist")))

    result = calls("list")

    assert listed(result) == ["CA2", "CA1"]
    [row] = [line for line in result.output.splitlines() if "CA1" in line]
    cells = [cell.strip() for cell in row.split("│")[1:-1]]
    assert cells == [
        "2025-03-04 10:00:00",
        "CA1",
        "bank_card",
        "+15550123",
        "completed",
        "goodbye",
        "42.5 s",
    ]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--agent", "dentist"], ["CA3"]),
        (["--outcome", "transferred"], ["CA2"]),
        (["--state", "verify"], ["CA3", "CA1"]),
        (["--since", "2025-03-04T11:01:00+01:00"], ["CA3", "CA2"]),
        (["--since", "2025-03-04T10:01:00", "--until", "2025-03-04T10:02:00"], ["CA2"]),
        (["--limit", "2"], ["CA3", "CA2"]),
    ],
)
def test_list_filters_the_calls(database: str, options: list[str], expected: list[str]) -> None:
    asyncio.run(
        store(
            database,
            record("CA1", path=["greeting", "verify", "goodbye"]),
            record("CA2", at_minute=1, outcome="transferred", path=["greeting", "transfer"]),
            record("CA3", at_minute=2, agent="dentist", path=["verify", "goodbye"]),
        )
    )

    assert listed(calls("list", *options)) == expected


def test_list_says_when_no_call_matches(database: str) -> None:
    asyncio.run(store(database, record("CA1")))

    result = calls("list", "--agent", "dentist")

    assert result.exit_code == 0
    assert result.output == "No calls match.\n"


def test_a_time_that_is_not_iso_8601_is_refused(database: str) -> None:
    result = calls("list", "--since", "yesterday")

    assert result.exit_code == 2
    assert "'yesterday' is not a time (ISO 8601" in result.output


# --- show ----------------------------------------------------------------------------------


def test_show_prints_the_whole_call(database: str) -> None:
    asyncio.run(store(database, record("CA1")))

    result = calls("show", "CA1")

    assert result.exit_code == 0, result.output
    lines = [" ".join(line.replace("│", " ").split()) for line in result.output.splitlines()]
    for expected in [
        "Call CA1 (record 1)",
        "Agent bank_card, over twilio_media",
        "Caller +15550123",
        "Called +15550100",
        "Started 2025-03-04 10:00:00 UTC",
        "Ended 2025-03-04 10:00:42 UTC, after 42.5 s (caller_hung_up)",
        "Outcome completed, in state goodbye",
        "Path greeting → verify → block_card → goodbye",
        "Recording CA1.wav",
        "0.40 agent Hello, how can I help you today? Hello, how can interrupted",
        "1.90 caller my card is lost overlapped",
        "8.00 caller keys 1234#",
        "9.20 agent Your card is blocked.",
        '{"name": "block_card", "args": {"last4": "1234"}, "result": "ok"}',
        "Quality: caller_rms_dbfs -23.5, clipping 0",
        "Turn latencies (s): 0.61, 0.48",
        "Audit entries: 1 (--json shows them)",
    ]:
        assert expected in lines


def test_show_json_prints_the_record(database: str) -> None:
    [stored] = asyncio.run(store(database, record("CA1")))

    result = calls("show", "CA1", "--json")

    assert result.exit_code == 0
    assert CallRecord.model_validate_json(result.output) == stored


def test_show_of_an_unknown_call_fails(database: str) -> None:
    result = calls("show", "CA404")

    assert result.exit_code == 1
    assert result.stderr == "Error: no call 'CA404' is on record\n"


# --- the database --------------------------------------------------------------------------


def test_the_database_comes_from_the_config_file(tmp_path: Path) -> None:
    other = tmp_path / "other.db"
    asyncio.run(store(f"sqlite+aiosqlite:///{other}", record("CA9")))
    config = tmp_path / "opusagent.yaml"
    config.write_text(f"database_url: sqlite+aiosqlite:///{other}\n", encoding="utf-8")

    result = calls("show", "CA9", "--config", str(config), "--json")

    assert result.exit_code == 0, result.output
    assert CallRecord.model_validate_json(result.output).call_id == "CA9"


def test_a_missing_sqlite_file_is_reported_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nowhere.db"
    monkeypatch.setenv("OPUSAGENT_DATABASE_URL", f"sqlite+aiosqlite:///{missing}")

    result = calls("list")

    assert result.exit_code == 1
    assert f"no call records yet: {missing} does not exist" in result.stderr
    assert not missing.exists()


def test_a_database_it_cannot_open_is_a_clear_error_without_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg now fails: not installed
    monkeypatch.setenv("OPUSAGENT_DATABASE_URL", "postgresql+asyncpg://agent:s3cret@db/calls")

    result = calls("list")

    assert result.exit_code == 1
    assert result.stderr.startswith(
        "Error: cannot read the call records at postgresql+asyncpg://agent:***@db/calls: "
        "The database driver 'asyncpg' is not installed"
    )
    assert "s3cret" not in result.stderr
