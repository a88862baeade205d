"""Contract tests for the Twilio Media Streams bridge: whole calls through a real uvicorn server
on loopback and a real WebSocket client that behaves like Twilio.

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
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from opusagent.app import create_app
from opusagent.audio.codecs import encode
from opusagent.audio.formats import Encoding
from opusagent.bridges.session import StartCall
from opusagent.bridges.twilio_media import TwilioSignature, TwilioTranslator, mount_twilio_media
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import CallMedia, ClearPlayback, HangUp, SendDtmf, Transfer
from opusagent.call.stages import Speaker, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.testing import FakeTTS, FakeVAD, ScriptedAgent, ScriptedSTT, Utterance

FRAME_S = 0.02
FRAME_BYTES = 160  # 20 ms of mu-law at 8 kHz
TOKEN = "test_auth_token_00000000000000000"
PUBLIC_URL = "https://voice.example.test"
STREAM_URL = "wss://voice.example.test/twilio/media"
VECTOR_SIGNATURE = "YVOwsMT0a8pkRERJA2+Ja4QFE3s="  # CATALOG §1.2 test vector for STREAM_URL
POLICY = TurnPolicy(end_of_turn_silence_ms=300, no_input_timeout_ms=0)
OUTBOUND_KEYS = {
    "media": {"event", "streamSid", "media"},
    "mark": {"event", "streamSid", "mark"},
    "clear": {"event", "streamSid"},
}

_rng = np.random.default_rng(7)
SPEECH_FRAME = encode(_rng.integers(-8000, 8000, 160).astype(np.int16), Encoding.MULAW)
SILENCE_FRAME = b"\xff" * FRAME_BYTES


def echo(turn: UserTurn) -> str:
    if turn.kind is TurnKind.START:
        return "Hello."
    return f"You said {turn.text or turn.dtmf}."


# --- the far end: a Twilio-like client ---------------------------------------------------


class TwilioLikeClient:
    """Speaks Twilio's side of a Media Stream over a real WebSocket.

    Sends `connected` and `start`, then 20 ms mu-law frames paced on the loop clock; plays
    what it receives on a playout clock, echoes marks when their audio would have finished,
    honours `clear`, and records every message it receives.
    """

    def __init__(self, ws: ClientConnection, call_sid: str, stream_sid: str) -> None:
        self.ws = ws
        self.call_sid = call_sid
        self.stream_sid = stream_sid
        self.received: list[dict[str, Any]] = []
        self.closed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._sequence = 0
        self._chunk = 0
        self._next_frame_at = 0.0
        self._play_end = 0.0
        self._pending_marks: dict[str, asyncio.TimerHandle] = {}
        self._reader = asyncio.create_task(self._read())

    def of(self, event: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("event") == event]

    async def start(self, parameters: Mapping[str, str] | None = None) -> None:
        await self.ws.send(
            json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        )
        start = {
            "streamSid": self.stream_sid,
            "accountSid": "AC00000000000000000000000000000000",
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": dict(parameters or {}),
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        await self._send_event("start", start=start)
        self._next_frame_at = self._loop.time()

    async def speech(self, seconds: float) -> None:
        await self.frames(SPEECH_FRAME, seconds)

    async def silence(self, seconds: float) -> None:
        await self.frames(SILENCE_FRAME, seconds)

    async def silence_until(self, done: Callable[[], bool], within: float) -> None:
        """Silence frames until `done()` holds; fails after `within` seconds."""
        deadline = self._loop.time() + within
        while not done():
            assert self._loop.time() < deadline, "timed out waiting for the call"
            await self.frames(SILENCE_FRAME, FRAME_S)

    async def frames(self, frame: bytes, seconds: float) -> None:
        for _ in range(round(seconds / FRAME_S)):
            delay = self._next_frame_at - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self._chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(round((self._chunk - 1) * FRAME_S * 1000)),
                "payload": base64.b64encode(frame).decode(),
            }
            await self._send_event("media", media=media)
            self._next_frame_at += FRAME_S

    async def dtmf(self, digit: str) -> None:
        await self._send_event("dtmf", dtmf={"track": "inbound_track", "digit": digit})

    async def stop(self) -> None:
        await self._send_event(
            "stop",
            stop={"accountSid": "AC00000000000000000000000000000000", "callSid": self.call_sid},
        )

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def _send_event(self, event: str, **body: Any) -> None:
        self._sequence += 1
        message = {"event": event, "sequenceNumber": str(self._sequence), **body}
        message["streamSid"] = self.stream_sid
        await self.ws.send(json.dumps(message))

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                message = json.loads(frame)
                self.received.append(message)
                self._play(message)
        except ConnectionClosed:
            pass
        finally:
            for handle in self._pending_marks.values():
                handle.cancel()
            self.closed.set()

    def _play(self, message: dict[str, Any]) -> None:
        now = self._loop.time()
        event = message.get("event")
        if event == "media":
            audio = base64.b64decode(message["media"]["payload"])
            self._play_end = max(self._play_end, now) + len(audio) / 8000
        elif event == "mark":
            name = message["mark"]["name"]
            at = max(self._play_end, now)
            self._pending_marks[name] = self._loop.call_at(at, self._echo_mark, name)
        elif event == "clear":
            self._play_end = now
            for name, handle in list(self._pending_marks.items()):
                handle.cancel()
                self._echo_mark(name)

    def _echo_mark(self, name: str) -> None:
        self._pending_marks.pop(name, None)
        self._spawn_send("mark", mark={"name": name})

    def _spawn_send(self, event: str, **body: Any) -> None:
        task = asyncio.ensure_future(self._send_event(event, **body))
        task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        await self.ws.close()
        await self._reader


# --- the server --------------------------------------------------------------------------


@dataclass
class Calls:
    """A CallFactory from fake stages; the caller's words come from the `script` parameter."""

    scripts: Mapping[str, list[Utterance]]
    agent: ScriptedAgent = field(default_factory=lambda: ScriptedAgent(echo))
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
        stages = Stages(FakeVAD(), stt, self.agent, FakeTTS(seconds_per_word=0.1, chunk_s=0.2))
        call = Call(call_id, media, stages, send, policy=POLICY)
        self.made[call_id] = call
        self.params[call_id] = params
        self._new_call.set()
        return call


def make_app(calls: Calls, auth_token: str | None = None) -> FastAPI:
    app = create_app(Settings(), loaders={})
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


@contextlib.asynccontextmanager
async def twilio_call(
    url: str, call_sid: str = "CA0001", stream_sid: str = "MZ0001", **headers: str
) -> AsyncIterator[TwilioLikeClient]:
    async with connect(url, additional_headers=headers) as ws:
        client = TwilioLikeClient(ws, call_sid, stream_sid)
        try:
            yield client
        finally:
            await client.close()


def check_outbound(client: TwilioLikeClient) -> None:
    """Every message is one of Twilio's three, with exactly its fields and our streamSid."""
    for message in client.received:
        event = message["event"]
        assert set(message) == OUTBOUND_KEYS[event], message
        assert message["streamSid"] == client.stream_sid
        if event == "media":
            assert set(message["media"]) == {"payload"}
            audio = base64.b64decode(message["media"]["payload"], validate=True)
            assert audio and len(audio) % FRAME_BYTES == 0
        elif event == "mark":
            assert set(message["mark"]) == {"name"}
            assert isinstance(message["mark"]["name"], str) and message["mark"]["name"]


def lines(call: Call, speaker: Speaker) -> list[str]:
    return [entry.text for entry in call.history if entry.speaker is speaker]


# --- whole calls -------------------------------------------------------------------------


async def test_whole_call_greeting_utterance_reply() -> None:
    calls = Calls({"": [Utterance(0.3, 0.8, "my card is lost")]})
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.start({"tenant": "acme"})
        await twilio.silence(0.3)
        await twilio.speech(0.5)
        call = await calls.wait_made("CA0001")
        await twilio.silence_until(lambda: len(call.history) >= 3, within=3.0)
        await twilio.stop()
        assert await call.wait_closed() == "stop"
        await asyncio.wait_for(twilio.closed.wait(), 3.0)

    assert calls.params["CA0001"] == {"tenant": "acme"}
    assert lines(call, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(call, Speaker.CALLER) == ["my card is lost"]
    check_outbound(twilio)
    assert {m["event"] for m in twilio.received} == {"media", "mark"}
    audio = sum(len(base64.b64decode(m["media"]["payload"])) for m in twilio.of("media"))
    # "Hello." (1 word) and the 6-word reply at 0.1 s a word, framed in 20 ms frames.
    assert abs(audio / 8000 - 0.7) <= 2 * FRAME_S
    assert twilio.of("mark"), "marks follow the audio"


async def test_barge_in_sends_clear() -> None:
    long_greeting = "Welcome to the bank, " + "please listen carefully to all of our options " * 3
    calls = Calls({"": [Utterance(0.3, 0.9, "stop please")]})
    calls.agent = ScriptedAgent(lambda t: long_greeting if t.kind is TurnKind.START else "Okay.")
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.start()
        await twilio.silence(0.3)
        await twilio.speech(0.6)
        call = await calls.wait_made("CA0001")
        await twilio.silence_until(lambda: len(call.history) >= 3, within=3.0)
        await twilio.stop()
        await call.wait_closed()

    check_outbound(twilio)
    events = [m["event"] for m in twilio.received]
    assert "clear" in events
    greeting_media = events[: events.index("clear")].count("media")
    assert greeting_media * FRAME_S < 4.0, "the greeting was cut before it all went out"
    first, reply = call.history[0], call.history[-1]
    assert first.interrupted and first.generated.startswith("Welcome")
    assert (reply.speaker, reply.text) == (Speaker.AGENT, "Okay.")


async def test_dtmf_reaches_the_agent() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.start()
        await twilio.silence(0.2)
        for digit in "42#":
            await twilio.dtmf(digit)
        await twilio.silence_until(
            lambda: any(t.kind is TurnKind.DTMF for t in calls.agent.turns), within=2.0
        )
        await twilio.stop()
        await (await calls.wait_made("CA0001")).wait_closed()

    dtmf_turns = [t for t in calls.agent.turns if t.kind is TurnKind.DTMF]
    assert [t.dtmf for t in dtmf_turns] == ["42"]
    check_outbound(twilio)


async def test_stop_ends_the_call_and_the_server_closes_the_socket() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.start()
        await twilio.silence(0.1)
        await twilio.stop()
        call = await calls.wait_made("CA0001")
        assert await asyncio.wait_for(call.wait_closed(), 3.0) == "stop"
        await asyncio.wait_for(twilio.closed.wait(), 3.0)


async def test_socket_closed_without_stop_ends_the_call() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url:
        async with twilio_call(url) as twilio:
            await twilio.start()
            await twilio.silence(0.1)
        call = await calls.wait_made("CA0001")
        assert await asyncio.wait_for(call.wait_closed(), 3.0) == "socket_closed"


async def test_bad_messages_are_ignored_and_the_call_goes_on() -> None:
    calls = Calls({"": [Utterance(0.2, 0.6, "hello there")]})
    async with serving(make_app(calls)) as url, twilio_call(url) as twilio:
        await twilio.send_raw('{"event":"media","streamSid":"MZ0001","media":{"payload":"/w=="}}')
        await twilio.start()
        sid = twilio.stream_sid
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
            await twilio.send_raw(bad)
        await twilio.start()  # a second start on the same connection is ignored
        call = await calls.wait_made("CA0001")
        await twilio.silence(0.2)
        await twilio.speech(0.4)
        await twilio.silence_until(lambda: len(call.history) >= 3, within=3.0)
        assert not call.ended
        await twilio.stop()
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

    async def run(url: str, who: str, speak_at: float, speak_for: float) -> TwilioLikeClient:
        async with twilio_call(url, f"CA-{who}", f"MZ-{who}") as twilio:
            await twilio.start({"script": who})
            await twilio.silence(speak_at)
            await twilio.speech(speak_for)
            call = await calls.wait_made(f"CA-{who}")
            await twilio.silence_until(lambda: len(call.history) >= 3, within=3.0)
            await twilio.stop()
            await call.wait_closed()
        return twilio

    async with serving(make_app(calls)) as url:
        alice, bob = await asyncio.gather(run(url, "alice", 0.3, 0.5), run(url, "bob", 0.5, 0.6))

    for client in (alice, bob):
        check_outbound(client)
    a, b = calls.made["CA-alice"], calls.made["CA-bob"]
    assert lines(a, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(b, Speaker.AGENT) == ["Hello.", "You said book an appointment."]
    assert lines(a, Speaker.CALLER) == ["my card is lost"]
    assert lines(b, Speaker.CALLER) == ["book an appointment"]
    assert {m["mark"]["name"].split(":")[0] for m in alice.of("mark")} == {"CA-alice"}
    assert {m["mark"]["name"].split(":")[0] for m in bob.of("mark")} == {"CA-bob"}


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


@pytest.mark.parametrize("signed_url", [STREAM_URL, "https://voice.example.test/twilio/media"])
async def test_stream_with_a_valid_signature_is_served(signed_url: str) -> None:
    calls = Calls({"": []})
    signature = RequestValidator(TOKEN).compute_signature(signed_url, {})
    async with (
        serving(make_app(calls, auth_token=TOKEN)) as url,
        twilio_call(url, **{"X-Twilio-Signature": signature}) as twilio,
    ):
        await twilio.start()
        await twilio.silence(0.1)
        await twilio.stop()
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
        await twilio.start()
        call = await calls.wait_made("CA0001")
        await asyncio.wait_for(twilio.closed.wait(), 3.0)
        assert await call.wait_closed() == "agent_hangup: done"
    check_outbound(twilio)
    assert twilio.of("media")


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
