"""`opusagent calls list|show`: the finished calls in the call records database (`database_url`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import SQLAlchemyError

from opusagent.cli_options import ConfigFileOption
from opusagent.config import ConfigError, load_settings
from opusagent.sessions.records import CallRecord, CallRecords, CallRecordsError

T = TypeVar("T")

calls_app = typer.Typer(
    help="Finished calls, from the call records database (setting database_url).",
    no_args_is_help=True,
)
_out = Console(highlight=False)

TIME_HELP = "ISO 8601, e.g. 2025-03-04T10:00:00+01:00; without an offset: UTC"


def _moment(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a time ({TIME_HELP})") from None


@calls_app.command("list")
def list_command(
    since: Annotated[
        datetime | None,
        typer.Option(
            parser=_moment, metavar="TIME", help=f"Calls started at or after TIME ({TIME_HELP})."
        ),
    ] = None,
    until: Annotated[
        datetime | None,
        typer.Option(parser=_moment, metavar="TIME", help="Calls started before TIME."),
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Calls served by this agent.")] = None,
    outcome: Annotated[
        str | None, typer.Option(help="Calls with this outcome, e.g. completed, transferred.")
    ] = None,
    state: Annotated[
        str | None, typer.Option(help="Calls that entered this state at any point.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many calls.")] = 100,
    config: ConfigFileOption = None,
) -> None:
    """List finished calls, newest first."""
    found = _with_records(
        config,
        lambda records: records.search(
            since=since, until=until, agent=agent, outcome=outcome, state=state, limit=limit
        ),
    )
    if not found:
        _out.print("No calls match.")
        return
    table = Table(title=f"Calls ({len(found)}, newest first)")
    table.add_column("Started (UTC)", no_wrap=True)
    table.add_column("Call", no_wrap=True)
    for column in ("Agent", "Caller", "Outcome", "Final state"):
        table.add_column(column)
    table.add_column("Duration", justify="right")
    for record in found:
        cells = (
            _time(record.started_at),
            record.call_id,
            record.agent,
            record.caller or "",
            record.outcome,
            record.final_state,
            f"{record.duration_s:.1f} s",
        )
        table.add_row(*(Text(cell) for cell in cells))
    _out.print(table)


@calls_app.command("show")
def show_command(
    call_id: Annotated[str, typer.Argument(help="The call's id (the provider's call id).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the record as JSON.")] = False,
    config: ConfigFileOption = None,
) -> None:
    """Show one call whole: parties, timings, what was said and heard, path, tools, quality."""
    record = _with_records(config, lambda records: records.get(call_id))
    if record is None:
        _fail(f"no call {call_id!r} is on record")
    if as_json:
        typer.echo(record.model_dump_json(indent=2))
        return
    _out.print(_overview(record), _transcript(record), _details(record))


def _overview(record: CallRecord) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    rows = {
        "Call": f"{record.call_id} (record {record.id})",
        "Agent": f"{record.agent}, over {record.bridge}",
        "Caller": record.caller or "unknown",
        "Called": record.called or "unknown",
        "Started": f"{_time(record.started_at)} UTC",
        "Ended": f"{_time(record.ended_at)} UTC, after {record.duration_s:.1f} s "
        f"({record.end_reason})",
        "Outcome": f"{record.outcome}, in state {record.final_state}",
        "Path": " → ".join(record.path) or "none",
        "Recording": record.recording_path or "none",
    }
    for name, value in rows.items():
        table.add_row(name, Text(value))
    return table


def _transcript(record: CallRecord) -> Table:
    table = Table(title="Transcript", title_justify="left")
    table.add_column("At (s)", justify="right")
    table.add_column("Who")
    table.add_column("Said")
    table.add_column("Caller heard")
    table.add_column("Notes")
    for line in record.transcript:
        notes = [
            *([f"keys {line.dtmf}"] if line.dtmf else []),
            *(["interrupted"] if line.interrupted else []),
            *(["overlapped"] if line.overlapped else []),
        ]
        table.add_row(
            "" if line.at_s is None else f"{line.at_s:.2f}",
            line.speaker,
            Text(line.text),
            Text("" if line.heard is None else line.heard),
            ", ".join(notes),
        )
    return table


def _details(record: CallRecord) -> Group:
    tools = [Text(json.dumps(call, ensure_ascii=False)) for call in record.tool_calls]
    quality = ", ".join(f"{name} {value:g}" for name, value in record.quality.items())
    latencies = ", ".join(f"{seconds:.2f}" for seconds in record.turn_latencies_s)
    return Group(
        Text("Tool calls", style="bold"),
        *(tools or [Text("none")]),
        Text.assemble(("Quality: ", "bold"), quality or "none"),
        Text.assemble(("Turn latencies (s): ", "bold"), latencies or "none"),
        Text.assemble(("Audit entries: ", "bold"), f"{len(record.audit)} (--json shows them)"),
    )


def _time(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def _with_records(config: Path | None, work: Callable[[CallRecords], Awaitable[T]]) -> T:
    """What `work` makes of the call records `database_url` names; a clear error otherwise."""
    try:
        url = load_settings(config).database_url
    except ConfigError as exc:
        _fail(str(exc))
    try:
        parsed = make_url(url)
    except SQLAlchemyError as exc:
        _fail(f"database_url is not a database URL: {exc}")
    shown = parsed.render_as_string(hide_password=True)
    if (missing := _missing_sqlite_file(parsed)) is not None:
        _fail(f"no call records yet: {missing} does not exist (database_url {shown})")

    async def run() -> T:
        records = await CallRecords.open(url)
        try:
            return await work(records)
        finally:
            await records.aclose()

    try:
        return asyncio.run(run())
    except (CallRecordsError, SQLAlchemyError, OSError) as exc:
        _fail(f"cannot read the call records at {shown}: {str(exc).splitlines()[0]}")


def _missing_sqlite_file(url: URL) -> str | None:
    """The SQLite file `url` names when it does not exist (opening it would create it)."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return None if Path(url.database).exists() else url.database


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(
        f"Error: {message}", style="red", markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)
