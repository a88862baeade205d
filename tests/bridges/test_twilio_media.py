"""Contract tests for the Twilio Media Streams bridge: whole calls through a real uvicorn server
on loopback, dialled by `opusagent.bridges.dial` as Twilio (`TwilioMediaFarEnd`).

Protocol facts (https://www.twilio.com/docs/voice/media-streams/websocket-messages): Twilio
sends `connected`, `start`, then 20 ms mu-law `media` frames; it plays outbound `media` in
order, echoes each `mark` once the audio before it has played, and on `clear` drops buffered
audio and returns every pending mark at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from opusagent.app import create_app
from opusagent.audio.codecs import encode
from opusagent.audio.formats import Encoding
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farend import Clear, Heard, Play, PlayMarker
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.bridges.session import Frame, StartCall
from opusagent.bridges.twilio_media import TwilioSignature, TwilioTranslator, mount_twilio_media
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import CallMedia, ClearPlayback, HangUp, SendDtmf, Transfer
from opusagent.call.stages import TTS, Samples, Speaker, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.testing import FakeTTS, FakeVAD, ScriptedAgent, ScriptedSTT, Utterance

FRAME_S = 0.02
FRAME_BYTES = 160  # 20 ms of mu-law at 8 kHz
RATE = 8000
TOKEN = "test_auth_token_00000000000000000"
PUBLIC_URL = "https://voice.example.test"
STREAM_URL = "wss://voice.example.test/twilio/media"
VECTOR_SIGNATURE = "YVOwsMT0a8pkRERJA2+Ja4QFE3s="  # CATALOG §1.2 test vector for STREAM_URL
ACCOUNT_SID = "AC" + "0" * 32
POLICY = TurnPolicy(end_of_turn_silence_ms=300, no_input_timeout_ms=0)
OUTBOUND_KEYS = {
    "media": {"event", "streamSid", "media"},
    "mark": {"event", "streamSid", "mark"},
    "clear": {"event", "streamSid"},
}

_rng = np.random.default_rng(7)


def noise(seconds: float) -> Samples:
    """Loud enough for FakeVAD to call it speech."""
    return _rng.integers(-8000, 8000, round(seconds * RATE)).astype(np.int16)


def echo(turn: UserTurn) -> str:
    if turn.kind is TurnKind.START:
        return "Hello."
    return f"You said {turn.text or turn.dtmf}."


# --- the server --------------------------------------------------------------------------


@dataclass
class Calls:
    """A CallFactory from fake stages; the caller's words come from the `script` parameter."""

    scripts: Mapping[str, list[Utterance]]
    agent: ScriptedAgent = field(default_factory=lambda: ScriptedAgent(echo))
    tts: Callable[[], TTS] = lambda: FakeTTS(seconds_per_word=0.1, chunk_s=0.2)
    made: dict[str, Call] = field(default_factory=dict)
    params: dict[str, Mapping[str, str]] = field(default_factory=dict)
    _new_call: asyncio.Event = field(default_factory=asyncio.Event)

    async def wait_made(self, call_id: str) -> Call:
        async with asyncio.timeout(3.0):
            while call_id not in self.made:
                await self._new_call.wait()
                self._new_call.clear()
        return self.made[call_id]

    def __call__(
        self, call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
    ) -> Call:
        stt = ScriptedSTT(self.scripts[params.get("script", "")])
        stages = Stages(FakeVAD(), stt, self.agent, self.tts())
        call = Call(call_id, media, stages, send, policy=POLICY)
        self.made[call_id] = call
        self.params[call_id] = params
        self._new_call.set()
        return call


def make_app(calls: Calls, auth_token: str | None = None) -> FastAPI:
    app = create_app(Settings(), loaders={}, bridges=False)
    mount_twilio_media(app, calls, auth_token=auth_token, public_url=PUBLIC_URL)
    return app


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port; yields the ws:// media URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/twilio/media"
    finally:
        server.should_exit = True
        await task
        sock.close()


def twilio_far_end(
    call_sid: str = "CA0001", stream_sid: str = "MZ0001", **parameters: str
) -> TwilioMediaFarEnd:
    return TwilioMediaFarEnd(
        call_sid=call_sid, stream_sid=stream_sid, account_sid=ACCOUNT_SID, parameters=parameters
    )


@contextlib.asynccontextmanager
async def twilio_call(
    url: str, far_end: TwilioMediaFarEnd | None = None
) -> AsyncIterator[DialSession]:
    async with dial(far_end or twilio_far_end(), url) as call:
        yield call


async def until(done: Callable[[], bool], within: float) -> None:
    """Wait (caller audio keeps flowing) until `done()` holds; fails after `within` seconds."""
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110 - the conditions are on the server's Call
            await asyncio.sleep(FRAME_S)


def messages(call: DialSession) -> list[dict[str, Any]]:
    return [json.loads(frame) for _, frame in call.received]


def of(call: DialSession, event: str) -> list[dict[str, Any]]:
    return [m for m in messages(call) if m.get("event") == event]


def check_outbound(call: DialSession, stream_sid: str = "MZ0001") -> None:
    """Every message is one of Twilio's three, with exactly its fields and our streamSid."""
    for message in messages(call):
        event = message["event"]
        assert set(message) == OUTBOUND_KEYS[event], message
        assert message["streamSid"] == stream_sid
        if event == "media":
            assert set(message["media"]) == {"payload"}
            audio = base64.b64decode(message["media"]["payload"], validate=True)
            assert audio and len(audio) % FRAME_BYTES == 0
        elif event == "mark":
            assert set(message["mark"]) == {"name"}
            assert isinstance(message["mark"]["name"], str) and message["mark"]["name"]
    assert not [heard for _, heard in call.heard if heard.kind == "error"]


def lines(call: Call, speaker: Speaker) -> list[str]:
    return [entry.text for entry in call.history if entry.speaker is speaker]


# --- whole calls -------------------------------------------------------------------------


async def test_whole_call_greeting_utterance_reply() -> None:
    calls = Calls({"": [Utterance(0.3, 0.8, "my card is lost")]})
    far_end = twilio_far_end(tenant="acme")
    async with serving(make_app(calls)) as url, twilio_call(url, far_end) as twilio:
        await twilio.silence(0.3)
        await twilio.play(noise(0.5), RATE)
        call = await calls.wait_made("CA0001")
        await until(lambda: len(call.history) >= 3, within=3.0)
        await twilio.hangup()
        assert await call.wait_closed() == "stop"

    assert calls.params["CA0001"] == {"tenant": "acme"}
    assert lines(call, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(call, Speaker.CALLER) == ["my card is lost"]
    check_outbound(twilio)
    assert {m["event"] for m in messages(twilio)} == {"media", "mark"}
    audio = sum(len(base64.b64decode(m["media"]["payload"])) for m in of(twilio, "media"))
    # "Hello." (1 word) and the 6-word reply at 0.1 s a word, framed in 20 ms frames.
    assert abs(audio / 8000 - 0.7) <= 2 * FRAME_S
    assert of(twilio, "mark"), "marks follow the audio"


async def test_barge_in_sends_clear() -> None:
    long_greeting = "Welcome to the bank, " + "please listen carefully to all of our options " * 3
    calls = Calls({"": [Utterance(0.3, 0.9, "stop please")]})
    calls.agent = ScriptedAgent(lambda t: long_greeting if t.kind is TurnKind.START else "Okay.")
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.silence(0.3)
        await twilio.play(noise(0.6), RATE)
        call = await calls.wait_made("CA0001")
        await until(lambda: len(call.history) >= 3, within=3.0)
        await twilio.hangup()
        await call.wait_closed()

    check_outbound(twilio)
    events = [m["event"] for m in messages(twilio)]
    assert "clear" in events
    greeting_media = events[: events.index("clear")].count("media")
    assert greeting_media * FRAME_S < 4.0, "the greeting was cut before it all went out"
    cleared_at = next(t for t, f in twilio.received if json.loads(f)["event"] == "clear")
    greeting_end = twilio.result().agent_utterances()[0][1]
    assert greeting_end == pytest.approx(cleared_at), "the far end stopped playing at the clear"
    first, reply = call.history[0], call.history[-1]
    assert first.interrupted and first.generated.startswith("Welcome")
    assert (reply.speaker, reply.text) == (Speaker.AGENT, "Okay.")


async def test_dtmf_reaches_the_agent() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.silence(0.2)
        await twilio.dtmf("42#", gap_s=0.0)
        await until(lambda: any(t.kind is TurnKind.DTMF for t in calls.agent.turns), within=2.0)
        await twilio.hangup()
        await (await calls.wait_made("CA0001")).wait_closed()

    dtmf_turns = [t for t in calls.agent.turns if t.kind is TurnKind.DTMF]
    assert [t.dtmf for t in dtmf_turns] == ["42"]
    check_outbound(twilio)


async def test_stop_ends_the_call_and_the_server_closes_the_socket() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.silence(0.1)
        for frame in twilio.far_end.hangup():  # `stop`, without closing the socket ourselves
            await twilio.send(frame)
        call = await calls.wait_made("CA0001")
        assert await asyncio.wait_for(call.wait_closed(), 3.0) == "stop"
        reason = await asyncio.wait_for(twilio.wait_ended(), 3.0)
        assert reason.startswith("closed by the server (1000")


async def test_socket_closed_without_stop_ends_the_call() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url:
        async with twilio_call(url) as twilio:
            await twilio.silence(0.1)
            await twilio.drop()
        call = await calls.wait_made("CA0001")
        assert await asyncio.wait_for(call.wait_closed(), 3.0) == "socket_closed"


class EarlyMediaTwilio(TwilioMediaFarEnd):
    """Sends a media message before `connected` and `start`."""

    def opening(self) -> list[Frame]:
        early = '{"event":"media","streamSid":"MZ0001","media":{"payload":"/w=="}}'
        return [early, *super().opening()]


async def test_bad_messages_are_ignored_and_the_call_goes_on() -> None:
    calls = Calls({"": [Utterance(0.2, 0.6, "hello there")]})
    far_end = EarlyMediaTwilio(call_sid="CA0001", stream_sid="MZ0001", account_sid=ACCOUNT_SID)
    async with serving(make_app(calls)) as url, twilio_call(url, far_end) as twilio:
        sid = far_end.stream_sid
        for bad in [
            "not json",
            "[1, 2]",
            '{"no": "event"}',
            '{"event": "bogus", "streamSid": "MZ0001"}',
            json.dumps({"event": "media", "streamSid": sid}),
            json.dumps({"event": "media", "streamSid": sid, "media": {"payload": "!!notb64"}}),
            json.dumps({"event": "media", "streamSid": "MZother", "media": {"payload": "/w=="}}),
            json.dumps({"event": "dtmf", "streamSid": sid, "dtmf": {"digit": "x"}}),
            json.dumps({"event": "mark", "streamSid": sid, "mark": {}}),
            json.dumps({"event": "mark", "streamSid": sid, "mark": {"name": "unknown"}}),
            json.dumps({"event": "stop", "streamSid": "MZother"}),
            b"\x00\x01binary",
        ]:
            await twilio.send(bad)
        await twilio.send(far_end.opening()[-1])  # a second start on the same connection is ignored
        call = await calls.wait_made("CA0001")
        await twilio.silence(0.2)
        await twilio.play(noise(0.4), RATE)
        await until(lambda: len(call.history) >= 3, within=3.0)
        assert not call.ended
        await twilio.hangup()
        assert await call.wait_closed() == "stop"

    assert lines(call, Speaker.CALLER) == ["hello there"]
    assert len(calls.made) == 1
    check_outbound(twilio)


async def test_unsupported_media_format_is_refused() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, connect(url) as ws:
        start = {
            "streamSid": "MZ0001",
            "callSid": "CA0001",
            "mediaFormat": {"encoding": "audio/l16", "sampleRate": 16000, "channels": 1},
        }
        await ws.send(json.dumps({"event": "start", "sequenceNumber": "1", "start": start}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3.0)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert calls.made == {}


@pytest.mark.slow
async def test_two_concurrent_calls_stay_isolated() -> None:
    calls = Calls(
        {
            "alice": [Utterance(0.3, 0.8, "my card is lost")],
            "bob": [Utterance(0.5, 1.1, "book an appointment")],
        }
    )

    async def run(url: str, who: str, speak_at: float, speak_for: float) -> DialSession:
        far_end = twilio_far_end(f"CA-{who}", f"MZ-{who}", script=who)
        async with twilio_call(url, far_end) as twilio:
            await twilio.silence(speak_at)
            await twilio.play(noise(speak_for), RATE)
            call = await calls.wait_made(f"CA-{who}")
            await until(lambda: len(call.history) >= 3, within=3.0)
            await twilio.hangup()
            await call.wait_closed()
        return twilio

    async with serving(make_app(calls)) as url:
        alice, bob = await asyncio.gather(run(url, "alice", 0.3, 0.5), run(url, "bob", 0.5, 0.6))

    check_outbound(alice, "MZ-alice")
    check_outbound(bob, "MZ-bob")
    a, b = calls.made["CA-alice"], calls.made["CA-bob"]
    assert lines(a, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(b, Speaker.AGENT) == ["Hello.", "You said book an appointment."]
    assert lines(a, Speaker.CALLER) == ["my card is lost"]
    assert lines(b, Speaker.CALLER) == ["book an appointment"]
    assert {m["mark"]["name"].split(":")[0] for m in of(alice, "mark")} == {"CA-alice"}
    assert {m["mark"]["name"].split(":")[0] for m in of(bob, "mark")} == {"CA-bob"}


# --- signatures and TwiML ----------------------------------------------------------------


def test_catalog_signature_vector_validates() -> None:
    check = TwilioSignature(TOKEN)
    assert check.valid(VECTOR_SIGNATURE, [STREAM_URL], {})
    assert not check.valid(VECTOR_SIGNATURE, ["wss://other.example.test/twilio/media"], {})
    assert not check.valid(None, [STREAM_URL], {})


@pytest.mark.parametrize("signature", [None, "", "bm90IGEgc2lnbmF0dXJl"])
async def test_stream_without_a_valid_signature_is_refused(signature: str | None) -> None:
    calls = Calls({"": []})
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    async with serving(make_app(calls, auth_token=TOKEN)) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers):
                pass
    assert refused.value.response.status_code == 403
    assert calls.made == {}


def signed_by(signed_url: str) -> TwilioMediaFarEnd:
    return TwilioMediaFarEnd(
        call_sid="CA0001", stream_sid="MZ0001", auth_token=TOKEN, signed_url=signed_url
    )


@pytest.mark.parametrize("signed_url", [STREAM_URL, "https://voice.example.test/twilio/media"])
async def test_stream_with_a_valid_signature_is_served(signed_url: str) -> None:
    calls = Calls({"": []})
    async with (
        serving(make_app(calls, auth_token=TOKEN)) as url,
        twilio_call(url, signed_by(signed_url)) as twilio,
    ):
        await twilio.silence(0.1)
        await twilio.hangup()
        assert await (await calls.wait_made("CA0001")).wait_closed() == "stop"


async def post_voice(
    app: FastAPI, form: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> httpx.Response:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PUBLIC_URL) as http,
    ):
        return await http.post("/twilio/voice?agent=bank", data=form, headers=headers)


VOICE_FORM = {"CallSid": "CA0001", "From": "+15550100", "To": "+15550199", "Direction": "inbound"}


async def test_voice_webhook_answers_connect_stream_twiml() -> None:
    response = await post_voice(make_app(Calls({})), VOICE_FORM)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.text)
    assert root.tag == "Response"
    [connect_el] = list(root)
    assert connect_el.tag == "Connect"
    [stream] = list(connect_el)
    assert stream.tag == "Stream" and stream.attrib == {"url": STREAM_URL}
    parameters = {p.attrib["name"]: p.attrib["value"] for p in stream}
    assert all(p.tag == "Parameter" for p in stream)
    assert parameters == {
        "From": "+15550100",
        "To": "+15550199",
        "Direction": "inbound",
        "agent": "bank",
    }


async def test_voice_webhook_checks_the_signature() -> None:
    app = make_app(Calls({}), auth_token=TOKEN)
    unsigned = await post_voice(app, VOICE_FORM)
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "forbidden"
    url = f"{PUBLIC_URL}/twilio/voice?agent=bank"
    signature = RequestValidator(TOKEN).compute_signature(url, VOICE_FORM)
    signed = await post_voice(app, VOICE_FORM, {"X-Twilio-Signature": signature})
    assert signed.status_code == 200
    assert "<Stream" in signed.text


# --- actions that need Twilio's REST API ---------------------------------------------------


async def test_agent_hang_up_closes_the_stream() -> None:
    calls = Calls({"": []})
    calls.agent = ScriptedAgent(lambda t: ["Goodbye.", HangUp("done")])
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        call = await calls.wait_made("CA0001")
        reason = await asyncio.wait_for(twilio.wait_ended(), 3.0)
        assert reason.startswith("closed by the server (1000")
        assert await call.wait_closed() == "agent_hangup: done"
    check_outbound(twilio)
    assert of(twilio, "media")


def test_transfer_and_send_dtmf_are_logged_not_sent(caplog: pytest.LogCaptureFixture) -> None:
    translator = TwilioTranslator()
    start = {
        "event": "start",
        "start": {
            "streamSid": "MZ0001",
            "callSid": "CA0001",
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
    }
    assert isinstance(translator.inbound(json.dumps(start)), StartCall)
    assert translator.outbound(Transfer("+15550123")) is None
    assert translator.outbound(SendDtmf("12")) is None
    assert len([r for r in caplog.records if "not yet supported" in r.message]) == 2
    clear = translator.outbound(ClearPlayback(3))
    assert clear == '{"event":"clear","streamSid":"MZ0001"}'


# --- Twilio's side: the far end the dialler speaks as ---------------------------------------


def test_far_end_opens_with_connected_then_start() -> None:
    far_end = twilio_far_end(tenant="acme")
    connected, start = (json.loads(frame) for frame in far_end.opening())
    assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
    assert start == {
        "event": "start",
        "sequenceNumber": "1",
        "start": {
            "streamSid": "MZ0001",
            "accountSid": ACCOUNT_SID,
            "callSid": "CA0001",
            "tracks": ["inbound"],
            "customParameters": {"tenant": "acme"},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        },
        "streamSid": "MZ0001",
    }


def test_far_end_numbers_media_dtmf_mark_and_stop() -> None:
    far_end = twilio_far_end()
    far_end.opening()
    frame = b"\xff" * FRAME_BYTES
    first, second = json.loads(far_end.audio(frame)), json.loads(far_end.audio(frame))
    [dtmf] = far_end.dtmf("5")
    mark = far_end.marker_played("CA0001:1:1")
    [stop] = far_end.hangup()
    assert first == {
        "event": "media",
        "sequenceNumber": "2",
        "media": {
            "track": "inbound",
            "chunk": "1",
            "timestamp": "0",
            "payload": base64.b64encode(frame).decode(),
        },
        "streamSid": "MZ0001",
    }
    assert (second["sequenceNumber"], second["media"]["chunk"]) == ("3", "2")
    assert second["media"]["timestamp"] == "20"
    assert json.loads(dtmf) == {
        "event": "dtmf",
        "sequenceNumber": "4",
        "dtmf": {"track": "inbound_track", "digit": "5"},
        "streamSid": "MZ0001",
    }
    assert mark is not None and json.loads(mark) == {
        "event": "mark",
        "sequenceNumber": "5",
        "mark": {"name": "CA0001:1:1"},
        "streamSid": "MZ0001",
    }
    assert json.loads(stop) == {
        "event": "stop",
        "sequenceNumber": "6",
        "stop": {"accountSid": ACCOUNT_SID, "callSid": "CA0001"},
        "streamSid": "MZ0001",
    }
    with pytest.raises(ValueError, match="DTMF"):
        far_end.dtmf("x")


def test_far_end_signs_the_upgrade_like_the_catalog_vector() -> None:
    assert signed_by(STREAM_URL).headers() == {"X-Twilio-Signature": VECTOR_SIGNATURE}
    dialled = TwilioMediaFarEnd.for_url("ws://voice.example.test/twilio/media", token=TOKEN)
    assert dialled.headers() == {"X-Twilio-Signature": VECTOR_SIGNATURE}
    assert TwilioMediaFarEnd.for_url(STREAM_URL).headers() == {}


def test_far_end_plays_media_and_honours_mark_and_clear() -> None:
    far_end = twilio_far_end()
    audio = encode(noise(0.1), Encoding.MULAW)
    media = {"event": "media", "streamSid": "MZ0001", "media": {"payload": _b64(audio)}}
    mark = {"event": "mark", "streamSid": "MZ0001", "mark": {"name": "m1"}}
    assert far_end.receive(json.dumps(media)) == [Play(audio)]
    assert far_end.receive(json.dumps(mark)) == [PlayMarker("m1")]
    assert far_end.receive('{"event":"clear","streamSid":"MZ0001"}') == [Clear()]


@pytest.mark.parametrize(
    "frame",
    [
        b"binary",
        "not json",
        '{"event": "hangup", "streamSid": "MZ0001"}',
        '{"event": "clear"}',
        '{"event": "clear", "streamSid": "MZother"}',
        '{"event": "clear", "streamSid": 1}',
        '{"event": "mark", "streamSid": "MZ0001", "mark": {"name": "m", "extra": 1}}',
        '{"event": "media", "streamSid": "MZ0001", "media": {"payload": "/w=="}, "track": "x"}',
        '{"event": "media", "streamSid": "MZ0001", "media": {"payload": "!!notb64"}}',
    ],
)
def test_far_end_reports_what_twilio_would_call_an_invalid_message(frame: Frame) -> None:
    [heard] = twilio_far_end().receive(frame)
    assert isinstance(heard, Heard)
    assert heard.kind == "error" and heard.text.startswith("31951 ")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
