"""Outbound calls: `POST /calls`, `GET /calls/active` and Twilio's status callbacks, with the
REST requests going through twilio-python to a loopback stand-in for Twilio (`twilio_api_fake`).

Facts: the call is created with `To`, `From`, `Twiml`, `StatusCallback`, `StatusCallbackEvent`
(initiated, ringing, answered, completed) and `StatusCallbackMethod` (CATALOG §1.1); the TwiML
connects it to our `<Stream>` or `<ConversationRelay>` with `<Parameter>`s (CATALOG §1.1, §2.1);
Twilio's status callback is a form with `CallSid` and `CallStatus`, signed with
`X-Twilio-Signature` (https://www.twilio.com/docs/voice/api/call-resource#statuscallback).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from opusagent.app import create_app
from opusagent.bridges.twilio_calls import CallRecords, mount_twilio_calls
from opusagent.bridges.twilio_rest import TwilioRest
from opusagent.config import BridgeSettings, Settings

from .twilio_api_fake import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilioApi,
    LoopbackHttpClient,
    serving,
)

PUBLIC_URL = "https://voice.example.test"
KEY = {"X-API-Key": "secret-key"}
SETTINGS = BridgeSettings(
    public_url=PUBLIC_URL,
    api_key="secret-key",
    twilio_account_sid=ACCOUNT_SID,
    twilio_auth_token=AUTH_TOKEN,
    twilio_from_number="+15550100",
)


@dataclass
class Server:
    api: FakeTwilioApi
    http: httpx.AsyncClient
    records: CallRecords

    async def place(self, **body: Any) -> httpx.Response:
        return await self.http.post("/calls", json={"to": "+15550123", **body}, headers=KEY)

    async def status(self, sid: str, status: str, *, signed: bool = True) -> httpx.Response:
        form = {
            "CallSid": sid,
            "AccountSid": ACCOUNT_SID,
            "CallStatus": status,
            "CallbackSource": "call-progress-events",
            "SequenceNumber": "0",
        }
        signature = RequestValidator(AUTH_TOKEN if signed else "other-token").compute_signature(
            f"{PUBLIC_URL}/twilio/status", form
        )
        return await self.http.post(
            "/twilio/status", data=form, headers={"X-Twilio-Signature": signature}
        )


@asynccontextmanager
async def server(
    settings: BridgeSettings = SETTINGS, *, rest_token: str | None = AUTH_TOKEN
) -> AsyncIterator[Server]:
    """Our app (in process) placing calls through the fake Twilio API (on loopback)."""
    api = FakeTwilioApi()
    async with serving(api.app) as base:
        rest = None
        if rest_token is not None:
            rest = TwilioRest(ACCOUNT_SID, rest_token, http_client=LoopbackHttpClient(base))
        app = create_app(Settings(bridges=settings), loaders={}, bridges=False)
        records = mount_twilio_calls(app, settings, rest=rest)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PUBLIC_URL) as http,
        ):
            yield Server(api, http, records)


def parameters(element: ET.Element) -> dict[str, str]:
    assert all(child.tag == "Parameter" for child in element)
    return {p.attrib["name"]: p.attrib["value"] for p in element}


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    return error


# --- the API key ---------------------------------------------------------------------------


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
async def test_calls_without_the_api_key_are_refused(headers: Mapping[str, str]) -> None:
    async with server() as s:
        placed = await s.http.post(
            "/calls", json={"to": "+15550123", "agent": "bank"}, headers=headers
        )
        listed = await s.http.get("/calls/active", headers=headers)
    for response in (placed, listed):
        error = error_of(response, 401)
        assert error["code"] == "unauthorized"
        assert "X-API-Key" in error["message"]
    assert s.api.requests == []


async def test_without_a_configured_key_the_api_is_open() -> None:
    async with server(SETTINGS.model_copy(update={"api_key": None})) as s:
        response = await s.http.post("/calls", json={"to": "+15550123", "agent": "bank"})
    assert response.status_code == 201


# --- placing calls -------------------------------------------------------------------------


async def test_a_media_call_is_placed_with_stream_twiml_and_status_callbacks() -> None:
    async with server() as s:
        response = await s.place(agent="bank", params={"account": "42"})

    assert response.status_code == 201
    body = response.json()
    [request] = s.api.requests
    fields = request.fields()
    assert body["sid"] in s.api.calls
    assert {k: v for k, v in body.items() if k not in ("sid", "created_at", "updated_at")} == {
        "to": "+15550123",
        "from": "+15550100",
        "agent": "bank",
        "bridge": "media",
        "params": {"account": "42"},
        "status": "queued",
    }
    assert fields["To"] == ["+15550123"]
    assert fields["From"] == ["+15550100"]
    assert fields["StatusCallback"] == [f"{PUBLIC_URL}/twilio/status"]
    assert fields["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert fields["StatusCallbackMethod"] == ["POST"]
    assert set(fields) == {
        "To",
        "From",
        "Twiml",
        "StatusCallback",
        "StatusCallbackEvent",
        "StatusCallbackMethod",
    }
    root = ET.fromstring(fields["Twiml"][0])
    [connect] = list(root)
    [stream] = list(connect)
    assert (root.tag, connect.tag, stream.tag) == ("Response", "Connect", "Stream")
    assert stream.attrib == {"url": "wss://voice.example.test/twilio/media"}
    assert parameters(stream) == {"agent": "bank", "account": "42"}


async def test_a_relay_call_is_placed_with_conversation_relay_twiml() -> None:
    async with server() as s:
        response = await s.place(agent="bank", bridge="relay", **{"from": "+15550111"})

    assert response.status_code == 201
    assert response.json()["bridge"] == "relay"
    fields = s.api.requests[0].fields()
    assert fields["From"] == ["+15550111"]
    [connect] = list(ET.fromstring(fields["Twiml"][0]))
    assert connect.attrib == {"action": f"{PUBLIC_URL}/twilio/relay/action"}
    [relay] = list(connect)
    assert relay.tag == "ConversationRelay"
    assert relay.attrib["url"] == "wss://voice.example.test/twilio/relay"
    assert parameters(relay) == {"agent": "bank"}


async def test_a_call_without_a_caller_id_is_refused() -> None:
    async with server(SETTINGS.model_copy(update={"twilio_from_number": None})) as s:
        response = await s.place(agent="bank")
    assert "from" in error_of(response, 422)["message"]
    assert s.api.requests == []


@pytest.mark.parametrize(
    "body",
    [
        {"agent": "bank", "params": {"agent": "other"}},
        {"agent": ""},
        {"agent": "bank", "bridge": "sip"},
        {"agent": "bank", "surprise": 1},
        {"agent": "bank", "params": {"account": 42}},
    ],
)
async def test_an_invalid_request_is_refused(body: dict[str, Any]) -> None:
    async with server() as s:
        response = await s.place(**body)
    assert error_of(response, 422)["code"] == "validation_error"
    assert s.api.requests == []


async def test_twiml_longer_than_twilio_takes_is_refused() -> None:
    async with server() as s:
        response = await s.place(agent="bank", params={"notes": "x" * 4000})
    assert "4000" in error_of(response, 422)["message"]
    assert s.api.requests == []


async def test_without_twilio_credentials_calls_cannot_be_placed() -> None:
    async with server(rest_token=None) as s:
        response = await s.place(agent="bank")
    assert "twilio_account_sid" in error_of(response, 503)["message"]


async def test_a_call_twilio_refuses_is_a_bad_gateway() -> None:
    async with server(rest_token="wrong-token") as s:
        response = await s.place(agent="bank")
        active = await s.http.get("/calls/active", headers=KEY)
    error = error_of(response, 502)
    assert "20003" in error["message"]
    assert active.json() == {"calls": []}


# --- active calls and status callbacks -----------------------------------------------------


async def test_active_calls_follow_the_status_callbacks() -> None:
    async with server() as s:
        sid = (await s.place(agent="bank")).json()["sid"]
        queued = (await s.http.get("/calls/active", headers=KEY)).json()["calls"]
        assert (await s.status(sid, "ringing")).status_code == 204
        ringing = (await s.http.get("/calls/active", headers=KEY)).json()["calls"]
        assert (await s.status(sid, "completed")).status_code == 204
        after = (await s.http.get("/calls/active", headers=KEY)).json()["calls"]

    assert [(c["sid"], c["status"]) for c in queued] == [(sid, "queued")]
    assert [(c["sid"], c["status"]) for c in ringing] == [(sid, "ringing")]
    assert after == []
    record = s.records.get(sid)
    assert record is not None and record.status == "completed"


async def test_a_status_callback_with_a_bad_signature_is_refused() -> None:
    async with server() as s:
        sid = (await s.place(agent="bank")).json()["sid"]
        response = await s.status(sid, "completed", signed=False)
        active = (await s.http.get("/calls/active", headers=KEY)).json()["calls"]
    assert error_of(response, 403)["code"] == "forbidden"
    assert [c["status"] for c in active] == ["queued"]


async def test_a_status_callback_without_its_fields_is_a_bad_request() -> None:
    async with server(SETTINGS.model_copy(update={"twilio_auth_token": None})) as s:
        response = await s.http.post("/twilio/status", data={"CallSid": "CA1"})
    error_of(response, 400)


async def test_a_status_callback_for_an_unknown_call_is_accepted() -> None:
    async with server() as s:
        response = await s.status("CA" + "7" * 32, "completed")
    assert response.status_code == 204


def test_a_finished_call_stays_finished() -> None:
    times = iter(datetime(2025, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(10))
    records = CallRecords(clock=lambda: next(times))
    records.add(
        sid="CA1",
        to="+15550123",
        from_="+15550100",
        agent="bank",
        bridge="media",
        params={},
        status="queued",
    )
    records.update_status("CA1", "completed")
    late = records.update_status("CA1", "ringing")  # callbacks can arrive out of order
    assert late is not None and late.status == "completed"
    assert late.updated_at == datetime(2025, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert records.active() == []
