"""Cross-channel continuity: a caller whose line dropped carries on by SMS, in the web chat, or
on a new call presenting the resume code texted to them."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from websockets.asyncio.client import connect

from bridges.loopback import serving, until
from bridges.twilio_api_fake import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FakeTwilioApi,
    LoopbackHttpClient,
)
from bridges.twilio_api_fake import serving as fake_serving
from opusagent.bridges.dial import dial
from opusagent.bridges.farends import BrowserFarEnd
from opusagent.bridges.twilio_rest import TwilioRest
from opusagent.config import Settings
from opusagent.testing import Utterance

from .redis_server import RedisServer
from .test_resume import POLICY, heard, served_app


async def dropped_in_identify(
    app: FastAPI, url: str, call_id: str, far_end: BrowserFarEnd | None = None
) -> str:
    """A browser call that reaches `identify` and drops; returns the resume code it was given."""
    store = app.state.sessions
    far_end = far_end or BrowserFarEnd(16000, call_id=call_id)
    async with dial(far_end, f"{url}/browser") as call:
        await call.wait_until_quiet(0.3, timeout=10)
        await call.silence(0.2)
        speech = np.random.default_rng(3).integers(-8000, 8000, 8000).astype(np.int16)
        await call.play(speech, 16000)
        await until(lambda: "identify" in heard(call, "state"), within=5)
        await call.drop()

    async def code() -> str | None:
        record = await store.load(call_id)
        found = record.state.tools.get("code") if record is not None else None
        return found["code"] if isinstance(found, dict) else None

    async with asyncio.timeout(5):  # the drop's session write lands just after the socket
        while (found := await code()) is None:  # noqa: ASYNC110 - polling the store
            await asyncio.sleep(0.05)
    return found


def sms_reply(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("text/xml")
    message = ET.fromstring(response.text).find("Message")
    assert message is not None, response.text
    return message.text or ""


@pytest.fixture
def app(redis_server: RedisServer) -> FastAPI:
    settings = Settings(turn=POLICY, redis_url=redis_server.url)
    return served_app(settings, [Utterance(0.2, 0.7, "I lost my card")])


async def test_the_drop_texts_a_resume_code(app: FastAPI) -> None:
    async with serving(app) as url:
        code = await dropped_in_identify(app, url, "drop-sms-0")
        record = await app.state.sessions.load("drop-sms-0")

    assert len(code) == 6 and code.isdigit()
    drop_turn = record.state.audit[-1]
    assert drop_turn.decision == "paused (connection lost; may resume)"
    sms = next(call for call in drop_turn.tool_calls if call.name == "send_sms")
    assert code in sms.args["body"]
    assert "OPUSAGENT_BRIDGES__TWILIO_ACCOUNT_SID" in sms.error, "no Twilio account here"


async def test_an_sms_reply_with_the_code_carries_on_by_text(app: FastAPI) -> None:
    async with serving(app) as url:
        code = await dropped_in_identify(app, url, "drop-sms-1")
        async with httpx.AsyncClient(base_url=url.replace("ws://", "http://")) as http:
            sender = {"From": "+15550001", "To": "+15550100"}
            first = await http.post("/twilio/sms", data={**sender, "Body": f"Code {code}"})
            second = await http.post("/twilio/sms", data={**sender, "Body": "4217"})
        record = await app.state.sessions.load("drop-sms-1")

    assert sms_reply(first).startswith("Sorry, we got cut off.")
    assert "last four digits" in sms_reply(first)
    assert sms_reply(second) == "Thanks. For security, what is your date of birth?"
    assert record is not None and record.state.state == "verify"


async def test_an_sms_without_a_conversation_says_what_to_send(app: FastAPI) -> None:
    async with (
        serving(app) as url,
        httpx.AsyncClient(base_url=url.replace("ws://", "http://")) as http,
    ):
        response = await http.post("/twilio/sms", data={"From": "+15550009", "Body": "hello"})

    assert "six-digit code" in sms_reply(response)


async def test_the_web_chat_carries_on_with_the_code(app: FastAPI) -> None:
    async with serving(app) as url:
        code = await dropped_in_identify(app, url, "drop-chat-1")
        async with connect(f"{url}/chat") as chat:
            await chat.send(json.dumps({"type": "text", "text": "hi"}))
            refused = json.loads(await chat.recv())
            await chat.send(json.dumps({"type": "resume", "code": code}))
            resumed = json.loads(await chat.recv())
            await chat.send(json.dumps({"type": "text", "text": "4217"}))
            answered = json.loads(await chat.recv())

    assert refused == {"type": "error", "message": "start or resume a conversation first"}
    assert (resumed["callId"], resumed["state"]) == ("drop-chat-1", "identify")
    assert resumed["text"].startswith("Sorry, we got cut off.")
    assert (answered["state"], answered["text"]) == (
        "verify",
        "Thanks. For security, what is your date of birth?",
    )


async def test_a_new_call_keying_the_code_carries_on(app: FastAPI) -> None:
    async with serving(app) as url:
        code = await dropped_in_identify(app, url, "drop-voice-1")
        async with dial(BrowserFarEnd(16000, call_id="new-call-1"), f"{url}/browser") as call:
            await call.wait_until_quiet(0.3, timeout=10)
            await call.dtmf(code + "#")
            await until(lambda: "identify" in heard(call, "state"), within=5)
            await call.wait_until_quiet(0.3, timeout=10)
            await call.dtmf("4217#")
            await until(lambda: "verify" in heard(call, "state"), within=5)
        record = await app.state.sessions.load("new-call-1")

    said = " ".join(heard(call, "agent_text"))
    assert "Sorry, we got cut off." in said
    assert record is not None
    assert record.state.context["resumed_from"] == "drop-voice-1"
    lines = [(line.speaker, line.text) for line in record.state.history]
    assert ("caller", "I lost my card") in lines, "the first call's conversation came along"


async def test_a_wrong_code_on_a_new_call_is_said_so(app: FastAPI) -> None:
    async with serving(app) as url, dial(BrowserFarEnd(16000), f"{url}/browser") as call:
        await call.wait_until_quiet(0.3, timeout=10)
        await call.dtmf("000000#")
        await until(lambda: any("couldn't find" in t for t in heard(call, "agent_text")), within=5)

    assert heard(call, "state")[-1] == "welcome"


async def test_the_resume_code_goes_out_through_twilio_messaging(redis_server: RedisServer) -> None:
    """The drop's text reaches Twilio's Messages API as documented (a loopback stand-in for the
    API host): To the caller, From the configured number, the code in the Body."""
    api = FakeTwilioApi()
    settings = Settings(turn=POLICY, redis_url=redis_server.url)
    settings = settings.model_copy(
        update={"bridges": settings.bridges.model_copy(update={"twilio_from_number": "+15550999"})}
    )
    async with fake_serving(api.app) as base:
        rest = TwilioRest(ACCOUNT_SID, AUTH_TOKEN, http_client=LoopbackHttpClient(base))
        app = served_app(settings, [Utterance(0.2, 0.7, "I lost my card")], twilio=rest)
        async with serving(app) as url:
            far_end = BrowserFarEnd(16000, call_id="drop-text-1", params={"From": "+15550001"})
            code = await dropped_in_identify(app, url, "drop-text-1", far_end)
            [request] = await api.wait_for_requests(1)

    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"
    fields = request.fields()
    assert (fields["To"], fields["From"]) == (["+15550001"], ["+15550999"])
    assert code in fields["Body"][0]
