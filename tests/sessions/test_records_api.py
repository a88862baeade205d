"""`GET /calls`, `GET /calls/{call_id}` and `GET /calls/{call_id}/recording`, served by uvicorn on
loopback from call records in a SQLite file, with the app's error shape and API key."""

from __future__ import annotations

import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bridges.twilio_api_fake import serving
from opusagent.app import create_app
from opusagent.bridges.twilio_calls import mount_twilio_calls
from opusagent.config import BridgeSettings, Settings
from opusagent.sessions.records import CallRecord, CallRecords
from opusagent.sessions.records_api import mount_call_records

from .records_samples import record

API_KEY = "secret-key"
KEY = {"X-API-Key": API_KEY}
SETTINGS = BridgeSettings(api_key=API_KEY)


@pytest.fixture
async def records(tmp_path: Path) -> AsyncIterator[CallRecords]:
    opened = await CallRecords.open(f"sqlite+aiosqlite:///{tmp_path / 'calls.db'}")
    yield opened
    await opened.aclose()


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    folder = tmp_path / "recordings"
    folder.mkdir()
    return folder


def write_wav(path: Path, frames: bytes = b"\x01\x00\x02\x00" * 800) -> bytes:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(frames)
    return path.read_bytes()


@asynccontextmanager
async def served(
    records: CallRecords | None,
    recordings_dir: Path | None,
    *,
    records_first: bool = True,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the call records (and, before or after them, the outbound calls API)."""
    app = create_app(Settings(bridges=SETTINGS), loaders={}, bridges=False)
    mounts: list[Callable[[FastAPI], Any]] = [
        lambda app: mount_call_records(
            app, lambda: records, api_key=API_KEY, recordings_dir=recordings_dir
        ),
        lambda app: mount_twilio_calls(app, SETTINGS, rest=None),
    ]
    for mount in mounts if records_first else reversed(mounts):
        mount(app)
    async with serving(app) as base, httpx.AsyncClient(base_url=base, headers=KEY) as http:
        yield http


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    return error


# --- GET /calls ----------------------------------------------------------------------------


async def test_calls_are_listed_newest_first_as_summaries(
    records: CallRecords, recordings: Path
) -> None:
    first = await records.add(record("CA1"))
    await records.add(record("CA2", at_minute=1))

    async with served(records, recordings) as http:
        response = await http.get("/calls")

    assert response.status_code == 200
    calls = response.json()["calls"]
    assert [call["call_id"] for call in calls] == ["CA2", "CA1"]
    assert calls[1] == {
        "id": first.id,
        "call_id": "CA1",
        "agent": "bank_card",
        "bridge": "twilio_media",
        "caller": "+15550123",
        "called": "+15550100",
        "started_at": "2025-03-04T10:00:00Z",
        "ended_at": "2025-03-04T10:00:42.500000Z",
        "duration_s": 42.5,
        "end_reason": "caller_hung_up",
        "outcome": "completed",
        "final_state": "goodbye",
        "recording_path": "CA1.wav",
    }


async def test_calls_are_filtered_by_the_query(records: CallRecords, recordings: Path) -> None:
    await records.add(record("CA1", path=["greeting", "verify", "goodbye"]))
    await records.add(
        record("CA2", at_minute=1, outcome="transferred", path=["greeting", "transfer"])
    )
    await records.add(record("CA3", at_minute=2, agent="dentist", path=["verify", "goodbye"]))
    expected = {
        "agent=dentist": ["CA3"],
        "outcome=transferred": ["CA2"],
        "state=verify": ["CA3", "CA1"],
        "since=2025-03-04T10:01:00Z": ["CA3", "CA2"],
        "until=2025-03-04T11:01:00%2B01:00": ["CA1"],
        "since=2025-03-04T10:01:00&until=2025-03-04T10:02:00": ["CA2"],
        "limit=1": ["CA3"],
        "agent=bank_card&state=verify": ["CA1"],
    }

    async with served(records, recordings) as http:
        responses = {query: await http.get(f"/calls?{query}") for query in expected}

    assert {query: r.status_code for query, r in responses.items()} == dict.fromkeys(expected, 200)
    found = {
        query: [call["call_id"] for call in r.json()["calls"]] for query, r in responses.items()
    }
    assert found == expected


async def test_a_bad_query_is_a_validation_error(records: CallRecords, recordings: Path) -> None:
    bad = {"limit=0": "limit", "limit=1001": "limit", "since=yesterday": "since"}

    async with served(records, recordings) as http:
        responses = {query: await http.get(f"/calls?{query}") for query in bad}

    for query, field in bad.items():
        error = error_of(responses[query], 422)
        assert error["code"] == "validation_error"
        assert [problem["loc"] for problem in error["detail"]] == [["query", field]]


# --- GET /calls/{call_id} ------------------------------------------------------------------


async def test_a_call_is_read_whole(records: CallRecords, recordings: Path) -> None:
    silence = {"caller_rms_dbfs": float("-inf"), "clipping": 0.0}
    stored = await records.add(record("CA1", quality=silence))

    async with served(records, recordings) as http:
        response = await http.get("/calls/CA1")

    assert response.status_code == 200
    body = response.json()
    assert CallRecord.model_validate(body) == stored
    assert body["transcript"][0] == {
        "speaker": "agent",
        "text": "Hello, how can I help you today?",
        "dtmf": "",
        "heard": "Hello, how can",
        "interrupted": True,
        "overlapped": False,
        "at_s": 0.4,
    }
    assert body["path"] == ["greeting", "verify", "block_card", "goodbye"]
    assert body["quality"] == {"caller_rms_dbfs": "-Infinity", "clipping": 0.0}


async def test_an_unknown_call_is_not_found(records: CallRecords, recordings: Path) -> None:
    async with served(records, recordings) as http:
        response = await http.get("/calls/CA404")

    error = error_of(response, 404)
    assert error == {"status": 404, "code": "not_found", "message": "No call 'CA404' is on record."}


# --- GET /calls/{call_id}/recording --------------------------------------------------------


async def test_the_recording_is_served_as_wav(records: CallRecords, recordings: Path) -> None:
    wav = write_wav(recordings / "CA1.wav")
    await records.add(record("CA1", recording_path="CA1.wav"))

    async with served(records, recordings) as http:
        response = await http.get("/calls/CA1/recording")

    assert response.status_code == 200
    assert response.headers["content-type"] == "audio/wav"
    assert response.content == wav


async def test_a_recording_given_by_absolute_path_inside_the_folder_is_served(
    records: CallRecords, recordings: Path
) -> None:
    (recordings / "2025").mkdir()
    wav = write_wav(recordings / "2025" / "CA1.wav")
    await records.add(record("CA1", recording_path=str(recordings / "2025" / "CA1.wav")))

    async with served(records, recordings) as http:
        response = await http.get("/calls/CA1/recording")

    assert response.status_code == 200
    assert response.content == wav


async def test_a_call_without_a_recording_has_none_to_serve(
    records: CallRecords, recordings: Path
) -> None:
    await records.add(record("CA1", recording_path=None))

    async with served(records, recordings) as http:
        response = await http.get("/calls/CA1/recording")

    assert error_of(response, 404)["message"] == "Call 'CA1' has no recording."


async def test_no_file_outside_the_recordings_folder_is_served(
    records: CallRecords, recordings: Path
) -> None:
    outside = recordings.parent / "outside.wav"
    write_wav(outside)
    (recordings / "link.wav").symlink_to(outside)
    places = ["missing.wav", "../outside.wav", str(outside), "link.wav", "."]
    for n, where in enumerate(places):
        await records.add(record(f"CA{n}", recording_path=where))

    async with served(records, recordings) as http:
        responses = [await http.get(f"/calls/CA{n}/recording") for n in range(len(places))]

    for n, response in enumerate(responses):
        error = error_of(response, 404)
        assert error["message"] == f"The recording of call 'CA{n}' is not in the recordings folder."


async def test_without_a_recordings_folder_no_recording_is_served(
    records: CallRecords, recordings: Path
) -> None:
    write_wav(recordings / "CA1.wav")
    await records.add(record("CA1", recording_path=str(recordings / "CA1.wav")))

    async with served(records, None) as http:
        response = await http.get("/calls/CA1/recording")

    error_of(response, 404)


async def test_the_recording_of_an_unknown_call_is_not_found(
    records: CallRecords, recordings: Path
) -> None:
    async with served(records, recordings) as http:
        response = await http.get("/calls/CA404/recording")

    assert error_of(response, 404)["message"] == "No call 'CA404' is on record."


# --- access and routing --------------------------------------------------------------------


async def test_requests_without_the_api_key_are_refused(
    records: CallRecords, recordings: Path
) -> None:
    write_wav(recordings / "CA1.wav")
    await records.add(record("CA1"))
    paths = ["/calls", "/calls/CA1", "/calls/CA1/recording"]

    async with served(records, recordings) as http:
        del http.headers["X-API-Key"]
        responses = [await http.get(path) for path in paths]
        responses += [await http.get(path, headers={"X-API-Key": "wrong"}) for path in paths]

    for response in responses:
        error = error_of(response, 401)
        assert error["code"] == "unauthorized"
        assert "X-API-Key" in error["message"]


async def test_before_the_records_are_open_the_api_is_unavailable(recordings: Path) -> None:
    async with served(None, recordings) as http:
        responses = [await http.get(path) for path in ("/calls", "/calls/CA1")]

    for response in responses:
        assert error_of(response, 503)["message"].startswith("The call records are not open")


@pytest.mark.parametrize("records_first", [True, False])
async def test_the_calls_in_progress_and_outbound_calls_keep_their_routes(
    records: CallRecords, recordings: Path, records_first: bool
) -> None:
    await records.add(record("active"))

    async with served(records, recordings, records_first=records_first) as http:
        active = await http.get("/calls/active")
        placed = await http.post("/calls", json={"to": "+15550123", "agent": "bank"})
        listed = await http.get("/calls")

    assert active.status_code == 200
    assert active.json() == {"calls": []}
    assert "Outbound calls need twilio_account_sid" in error_of(placed, 503)["message"]
    assert [call["call_id"] for call in listed.json()["calls"]] == ["active"]
