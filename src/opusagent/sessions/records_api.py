"""Call records over HTTP: `GET /calls` (filtered, newest first), `GET /calls/{call_id}` and
`GET /calls/{call_id}/recording` (the call's WAV).

Like the rest of the REST API, these need the `X-API-Key` header when an API key is configured.
`/calls/{call_id}` never matches `/calls/active` (the calls in progress, `twilio_calls`),
whichever of the two is mounted first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.convertors import Convertor, register_url_convertor

from opusagent.bridges.twilio_calls import ACTIVE_CALLS_PATH, CALLS_PATH, api_key_guard
from opusagent.sessions.records import CallRecord, CallRecords

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
CALL_ID_CONVERTOR = "opusagent_call_id"
RecordsGetter = Callable[[], CallRecords | None]
"""The open call records, or None while they are not (yet) open."""


class CallIdConvertor(Convertor[str]):
    """A path segment naming a call: anything but the segment of `/calls/active`."""

    regex = f"(?!{ACTIVE_CALLS_PATH.rsplit('/', 1)[1]}$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor(CALL_ID_CONVERTOR, CallIdConvertor())
CALL_PATH = f"{CALLS_PATH}/{{call_id:{CALL_ID_CONVERTOR}}}"
RECORDING_PATH = f"{CALL_PATH}/recording"


class CallSummary(BaseModel):
    """A call as listed by `GET /calls`; `GET /calls/{call_id}` has the whole record."""

    id: int
    call_id: str
    agent: str
    bridge: str
    caller: str | None
    called: str | None
    started_at: datetime
    ended_at: datetime
    duration_s: float
    end_reason: str
    outcome: str
    final_state: str
    recording_path: str | None


class CallList(BaseModel):
    calls: list[CallSummary]


def mount_call_records(
    app: FastAPI,
    records_getter: RecordsGetter,
    *,
    api_key: str | None,
    recordings_dir: Path | None,
) -> None:
    """Serve the call records `records_getter` gives (503 while it gives None) on `app`.

    Recordings are served only from inside `recordings_dir` (None: none are served).
    """
    protected = [Depends(api_key_guard(api_key))]

    def open_records() -> CallRecords:
        records = records_getter()
        if records is None:
            raise HTTPException(503, "The call records are not open yet; try again shortly.")
        return records

    async def find(call_id: str) -> CallRecord:
        record = await open_records().get(call_id)
        if record is None:
            raise HTTPException(404, f"No call {call_id!r} is on record.")
        return record

    @app.get(CALLS_PATH, dependencies=protected, summary="Finished calls, newest first")
    async def list_calls(
        since: Annotated[
            datetime | None,
            Query(description="Calls started at or after this time (ISO 8601; no offset: UTC)."),
        ] = None,
        until: Annotated[
            datetime | None,
            Query(description="Calls started before this time (ISO 8601; no offset: UTC)."),
        ] = None,
        agent: Annotated[str | None, Query(description="Calls served by this agent.")] = None,
        outcome: Annotated[
            str | None, Query(description="Calls with this outcome, e.g. completed.")
        ] = None,
        state: Annotated[
            str | None, Query(description="Calls that entered this state at any point.")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="At most this many.")] = 100,
    ) -> CallList:
        found = await open_records().search(
            since=since, until=until, agent=agent, outcome=outcome, state=state, limit=limit
        )
        return CallList(
            calls=[CallSummary.model_validate(record, from_attributes=True) for record in found]
        )

    @app.get(CALL_PATH, dependencies=protected, summary="A finished call's whole record")
    async def get_call(call_id: str) -> CallRecord:
        return await find(call_id)

    @app.get(
        RECORDING_PATH,
        dependencies=protected,
        response_class=FileResponse,
        responses={200: {"content": {"audio/wav": {}}, "description": "The call's recording."}},
        summary="A finished call's recording (WAV)",
    )
    async def get_recording(call_id: str) -> FileResponse:
        record = await find(call_id)
        if record.recording_path is None:
            raise HTTPException(404, f"Call {call_id!r} has no recording.")
        path = await asyncio.to_thread(recording_file, record.recording_path, recordings_dir)
        if path is None:
            log.warning("recording of call %s not found: %s", call_id, record.recording_path)
            raise HTTPException(
                404, f"The recording of call {call_id!r} is not in the recordings folder."
            )
        return FileResponse(path, media_type="audio/wav")


def recording_file(recording_path: str, recordings_dir: Path | None) -> Path | None:
    """The file `recording_path` (relative to `recordings_dir`, or absolute) names, if it is a
    file inside `recordings_dir` (links resolved); otherwise None."""
    if recordings_dir is None:
        return None
    folder = recordings_dir.resolve()
    path = (folder / recording_path).resolve()
    if not path.is_relative_to(folder) or not path.is_file():
        return None
    return path
