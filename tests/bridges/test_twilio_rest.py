"""Twilio call control over REST: the exact requests twilio-python's async client sends to a
loopback stand-in for Twilio's API (`twilio_api_fake`), and the Media Streams bridge using them.

Protocol facts (CATALOG §1.7, §1.8): hang up = `POST …/Calls/{CallSid}.json` with
`Status=completed` (an ended call answers 404, code 20404); transfer = the same request with
`Twiml=<Response><Dial>…`; create = `POST …/Calls.json` with `To`, `From`, `Twiml`,
`StatusCallback`, `StatusCallbackEvent` once per event and `StatusCallbackMethod`.
"""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import connect

from opusagent.app import create_app
from opusagent.bridges.session import Act, CallFactory, CloseSocket, StartCall
from opusagent.bridges.twilio_media import TwilioTranslator, mount_twilio_media
from opusagent.bridges.twilio_rest import (
    TwilioApiError,
    TwilioRest,
    dial_twiml,
    rest_from_settings,
)
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import CallMedia, HangUp, SendDtmf, Transfer
from opusagent.config import BridgeSettings, Settings
from opusagent.testing import FakeTTS, FakeVAD, ScriptedAgent, ScriptedSTT

from .twilio_api_fake import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    ApiRequest,
    FakeTwilioApi,
    LoopbackHttpClient,
    serving,
)

CALLS = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Calls"
CALL_SID = "CA" + "1" * 32


@asynccontextmanager
async def twilio_api() -> AsyncIterator[tuple[FakeTwilioApi, TwilioRest]]:
    """The fake API, serving, and a `TwilioRest` whose SDK client talks to it."""
    api = FakeTwilioApi()
    async with serving(api.app) as base:
        yield api, TwilioRest(ACCOUNT_SID, AUTH_TOKEN, http_client=LoopbackHttpClient(base))


def only(api: FakeTwilioApi) -> ApiRequest:
    [request] = api.requests
    assert request.auth == (ACCOUNT_SID, AUTH_TOKEN)
    return request


def twiml_of(request: ApiRequest) -> ET.Element:
    [twiml] = request.fields()["Twiml"]
    return ET.fromstring(twiml)


async def test_hang_up_sends_status_completed() -> None:
    async with twilio_api() as (api, rest):
        api.add_live_call(CALL_SID)
        assert await rest.hang_up(CALL_SID) is True
    request = only(api)
    assert (request.method, request.path) == ("POST", f"{CALLS}/{CALL_SID}.json")
    assert request.form == [("Status", "completed")]
    assert api.calls[CALL_SID]["status"] == "completed"


async def test_hang_up_of_a_call_that_already_ended_is_fine() -> None:
    async with twilio_api() as (api, rest):
        api.add_live_call(CALL_SID)
        api.end_call(CALL_SID)
        assert await rest.hang_up(CALL_SID) is False
        assert await rest.hang_up("CA" + "9" * 32) is False  # never existed: 404 too
    assert [r.form for r in api.requests] == [[("Status", "completed")]] * 2


async def test_transfer_replaces_the_twiml_with_a_dial() -> None:
    async with twilio_api() as (api, rest):
        api.add_live_call(CALL_SID)
        await rest.transfer(CALL_SID, "+15550123")
    request = only(api)
    assert request.path == f"{CALLS}/{CALL_SID}.json"
    assert [name for name, _ in request.form] == ["Twiml"]
    root = twiml_of(request)
    assert root.tag == "Response"
    [dial] = list(root)
    assert dial.tag == "Dial" and dial.attrib == {}
    [number] = list(dial)
    assert (number.tag, number.text) == ("Number", "+15550123")


def test_transfer_to_a_sip_address_dials_sip() -> None:
    root = ET.fromstring(dial_twiml("sip:agent@pbx.example.test"))
    [dial] = list(root)
    [sip] = list(dial)
    assert (sip.tag, sip.text) == ("Sip", "sip:agent@pbx.example.test")


async def test_transfer_of_an_ended_call_fails_saying_so() -> None:
    async with twilio_api() as (_, rest):
        with pytest.raises(TwilioApiError) as failed:
            await rest.transfer(CALL_SID, "+15550123")
    assert failed.value.call_gone
    assert (failed.value.status, failed.value.code) == (404, 20404)
    assert CALL_SID in str(failed.value) and "+15550123" in str(failed.value)


async def test_create_call_sends_every_field() -> None:
    async with twilio_api() as (api, rest):
        created = await rest.create_call(
            to="+15550123",
            from_="+15550100",
            twiml="<Response><Hangup/></Response>",
            status_callback="https://voice.example.test/twilio/status",
        )
    request = only(api)
    assert (request.method, request.path) == ("POST", f"{CALLS}.json")
    assert request.fields() == {
        "To": ["+15550123"],
        "From": ["+15550100"],
        "Twiml": ["<Response><Hangup/></Response>"],
        "StatusCallback": ["https://voice.example.test/twilio/status"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "StatusCallbackMethod": ["POST"],
    }
    assert created.sid in api.calls and created.sid.startswith("CA")
    assert created.status == "queued"


async def test_wrong_credentials_are_an_api_error() -> None:
    api = FakeTwilioApi()
    async with serving(api.app) as base:
        rest = TwilioRest(ACCOUNT_SID, "wrong", http_client=LoopbackHttpClient(base))
        with pytest.raises(TwilioApiError) as failed:
            await rest.hang_up(CALL_SID)
    assert (failed.value.status, failed.value.code) == (401, 20003)
    assert not failed.value.call_gone


async def test_an_unreachable_api_is_an_api_error() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there
    rest = TwilioRest(
        ACCOUNT_SID, AUTH_TOKEN, http_client=LoopbackHttpClient(f"http://127.0.0.1:{port}")
    )
    with pytest.raises(TwilioApiError) as failed:
        await rest.hang_up(CALL_SID)
    assert failed.value.status is None and "could not be reached" in str(failed.value)


def test_rest_client_only_with_an_account_and_a_token() -> None:
    assert rest_from_settings(BridgeSettings()) is None
    assert rest_from_settings(BridgeSettings(twilio_account_sid=ACCOUNT_SID)) is None
    both = BridgeSettings(twilio_account_sid=ACCOUNT_SID, twilio_auth_token=AUTH_TOKEN)
    rest = rest_from_settings(both)
    assert rest is not None and rest.account_sid == ACCOUNT_SID


# --- the Media Streams bridge with REST ------------------------------------------------------


def started_translator(rest: TwilioRest | None) -> TwilioTranslator:
    translator = TwilioTranslator(rest)
    start = {
        "event": "start",
        "start": {
            "streamSid": "MZ0001",
            "callSid": CALL_SID,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    assert isinstance(translator.inbound(json.dumps(start)), StartCall)
    return translator


async def test_media_bridge_transfers_through_rest() -> None:
    async with twilio_api() as (api, rest):
        api.add_live_call(CALL_SID)
        act = started_translator(rest).outbound(Transfer("+15550123", "billing"))
        assert isinstance(act, Act)
        await act.run()
    [number] = list(next(iter(twiml_of(only(api)))))
    assert number.text == "+15550123"


def test_media_bridge_without_rest_only_logs_a_transfer(caplog: pytest.LogCaptureFixture) -> None:
    assert started_translator(None).outbound(Transfer("+15550123")) is None
    assert any("REST" in r.message and "+15550123" in r.message for r in caplog.records)


def test_media_bridge_without_rest_hangs_up_by_closing_the_stream() -> None:
    assert isinstance(started_translator(None).outbound(HangUp("done")), CloseSocket)


@pytest.mark.parametrize("with_rest", [False, True])
def test_media_bridge_refuses_to_send_dtmf(
    with_rest: bool, caplog: pytest.LogCaptureFixture
) -> None:
    rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN) if with_rest else None
    assert started_translator(rest).outbound(SendDtmf("12")) is None
    assert any("DTMF" in r.message and "12" in r.message for r in caplog.records)


def hang_up_calls(agent: ScriptedAgent) -> CallFactory:
    def build(call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]) -> Call:
        stages = Stages(FakeVAD(), ScriptedSTT([]), agent, FakeTTS(seconds_per_word=0.05))
        return Call(call_id, media, stages, send)

    return build


async def test_media_bridge_agent_hang_up_ends_the_call_through_rest() -> None:
    agent = ScriptedAgent(lambda turn: ["Goodbye.", HangUp("done")])
    async with twilio_api() as (api, rest):
        api.add_live_call(CALL_SID)
        app = create_app(Settings(), loaders={}, bridges=False)
        mount_twilio_media(app, hang_up_calls(agent), auth_token=None, public_url=None, rest=rest)
        async with serving(app) as base:
            url = base.replace("http://", "ws://") + "/twilio/media"
            async with connect(url) as ws:
                await ws.send(json.dumps({"event": "connected", "protocol": "Call"}))
                start = {
                    "streamSid": "MZ0001",
                    "callSid": CALL_SID,
                    "mediaFormat": {
                        "encoding": "audio/x-mulaw",
                        "sampleRate": 8000,
                        "channels": 1,
                    },
                }
                await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": start}))
                events = [json.loads(m)["event"] async for m in ws]  # until the server closes
        await api.wait_for_requests(1)
    assert "media" in events
    assert only(api).form == [("Status", "completed")]
    assert api.calls[CALL_SID]["status"] == "completed"
