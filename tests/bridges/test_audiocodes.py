"""Contract tests for the AudioCodes VoiceAI Connect Bot API (streaming mode) bridge.

Whole calls run through a real uvicorn server on loopback, dialled by `AudioCodesFarEnd` (or,
for single protocol steps, a plain WebSocket client). The expected messages are written out
from CATALOG §3 (AudioCodes' SDK https://github.com/audiocodes/ac-bot-api, `types.ts` and
`bot-conversation.ts`), not from the bridge's models, so a drift between the two fails here:

- bot -> VAIC: `session.accepted {mediaFormat}`, `session.error {conversationId, reason}`,
  `userStream.started` / `.stopped` / `.speech.started` / `.speech.stopped` (no fields),
  `userStream.speech.hypothesis {alternatives: [{text}]}`, `.recognition {alternatives:
  [{text, confidence}]}`, `playStream.start {streamId, mediaFormat}`, `playStream.chunk
  {streamId, audioChunk}`, `playStream.stop {streamId}`, `activities {activities: [{type:
  "event", name, activityParams, id, timestamp}]}`, `connection.validated {success: true}`.
- control events: `hangup {hangupReason}`, `transfer {transferTarget, handoverReason}`,
  `sendDtmf {dtmfDigits}` (at most 20 of 0-9, *, #).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from opusagent.app import create_app
from opusagent.audio.formats import (
    MULAW_8K,
    PCM16_8K,
    PCM16_16K,
    PCM16_24K,
    AudioChunk,
    AudioFormat,
)
from opusagent.bridges.audiocodes import AudioCodesTranslator, mount_audiocodes
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farend import Ended, Heard, Play, Ready, Send
from opusagent.bridges.farends.audiocodes import AudioCodesFarEnd
from opusagent.bridges.session import Reply, StartCall, StreamRefusedError
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import (
    AgentAudio,
    AgentText,
    CallerSpeech,
    CallerTranscript,
    CallMedia,
    ClearPlayback,
    HangUp,
    ReplyAudioEnd,
    SendDtmf,
    Transfer,
)
from opusagent.call.stages import Speaker, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.testing import FakeTTS, FakeVAD, ScriptedAgent, ScriptedSTT, Utterance

TOKEN = "ac-shared-token-0000"
FRAME_S = 0.02
POLICY = TurnPolicy(end_of_turn_silence_ms=300, no_input_timeout_ms=0)
FORMATS: dict[str, tuple[AudioFormat, int]] = {
    # mediaFormat: (audio format, bytes in 20 ms)
    "raw/lpcm16": (PCM16_16K, 640),
    "raw/lpcm16_8": (PCM16_8K, 320),
    "raw/lpcm16_24": (PCM16_24K, 960),
    "raw/mulaw": (MULAW_8K, 160),
}
OUTBOUND_KEYS = {
    "session.accepted": {"type", "mediaFormat"},
    "session.error": {"type", "conversationId", "reason"},
    "userStream.started": {"type"},
    "userStream.stopped": {"type"},
    "userStream.speech.started": {"type"},
    "userStream.speech.stopped": {"type"},
    "userStream.speech.hypothesis": {"type", "alternatives"},
    "userStream.speech.recognition": {"type", "alternatives"},
    "playStream.start": {"type", "streamId", "mediaFormat"},
    "playStream.chunk": {"type", "streamId", "audioChunk"},
    "playStream.stop": {"type", "streamId"},
    "activities": {"type", "activities"},
    "connection.validated": {"type", "success"},
}
ACTIVITY_PARAMS = {
    "hangup": {"hangupReason"},
    "transfer": {"transferTarget", "handoverReason"},
    "sendDtmf": {"dtmfDigits"},
}

_rng = np.random.default_rng(11)
SPEECH_RATE = 16000


def speech(seconds: float) -> np.ndarray[Any, np.dtype[np.int16]]:
    """Loud noise: speech to the energy VAD."""
    return _rng.integers(-8000, 8000, round(seconds * SPEECH_RATE)).astype(np.int16)


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
    made: dict[str, Call] = field(default_factory=dict)
    media: dict[str, CallMedia] = field(default_factory=dict)
    params: dict[str, Mapping[str, str]] = field(default_factory=dict)

    def __call__(
        self, call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
    ) -> Call:
        stt = ScriptedSTT(self.scripts[params.get("script", "")])
        stages = Stages(FakeVAD(), stt, self.agent, FakeTTS(seconds_per_word=0.1, chunk_s=0.2))
        call = Call(call_id, media, stages, send, policy=POLICY)
        self.made[call_id] = call
        self.media[call_id] = media
        self.params[call_id] = params
        return call


def make_app(calls: Calls, token: str | None = None) -> FastAPI:
    app = create_app(Settings(), loaders={}, bridges=False)
    mount_audiocodes(app, calls, token=token)
    return app


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port; yields the ws:// URL of the bot."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}/audiocodes"
    finally:
        server.should_exit = True
        await task
        sock.close()


def far_end(media_format: str = "raw/lpcm16", **kwargs: Any) -> AudioCodesFarEnd:
    return AudioCodesFarEnd([media_format], conversation_id=f"conv-{uuid.uuid4()}", **kwargs)


# --- what the far end received -----------------------------------------------------------


def messages(call: DialSession) -> list[dict[str, Any]]:
    return [json.loads(frame) for _, frame in call.received]


def of(received: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in received if m["type"] == kind]


async def until(call: DialSession, done: Callable[[], bool], within: float = 3.0) -> None:
    """Keep the caller streaming (silence) until `done()` holds; fails after `within` s."""
    async with asyncio.timeout(within):
        while not done():
            await call.silence(FRAME_S)
            await asyncio.sleep(0)


@dataclass
class Stream:
    stream_id: str
    chunks: int = 0
    stopped: bool = False


def check_outbound(received: list[dict[str, Any]], media_format: str) -> list[Stream]:
    """Every message has exactly its fields; play streams run one at a time in the accepted
    format, each chunk 20 ms of audio in its own open stream. Returns the streams in order."""
    frame_bytes = FORMATS[media_format][1]
    streams: list[Stream] = []
    open_stream: Stream | None = None
    for message in received:
        kind = message["type"]
        assert set(message) == OUTBOUND_KEYS[kind], message
        if kind == "session.accepted":
            assert message["mediaFormat"] == media_format
        elif kind == "playStream.start":
            assert open_stream is None, f"{message} while {open_stream} is open"
            assert message["mediaFormat"] == media_format
            assert isinstance(message["streamId"], str) and message["streamId"]
            assert message["streamId"] not in {s.stream_id for s in streams}
            open_stream = Stream(message["streamId"])
            streams.append(open_stream)
        elif kind == "playStream.chunk":
            assert open_stream is not None and message["streamId"] == open_stream.stream_id
            audio = base64.b64decode(message["audioChunk"], validate=True)
            assert len(audio) == frame_bytes
            open_stream.chunks += 1
        elif kind == "playStream.stop":
            assert open_stream is not None and message["streamId"] == open_stream.stream_id
            open_stream.stopped = True
            open_stream = None
        elif kind == "userStream.speech.hypothesis":
            [alternative] = message["alternatives"]
            assert set(alternative) == {"text"} and alternative["text"]
        elif kind == "userStream.speech.recognition":
            [alternative] = message["alternatives"]
            assert set(alternative) == {"text", "confidence"} and alternative["text"]
            assert isinstance(alternative["confidence"], float)
        elif kind == "activities":
            assert open_stream is None, "control events go out between play streams"
            for activity in message["activities"]:
                check_activity(activity)
    return streams


def check_activity(activity: dict[str, Any]) -> None:
    assert set(activity) == {"type", "name", "activityParams", "id", "timestamp"}, activity
    assert activity["type"] == "event"
    assert set(activity["activityParams"]) <= ACTIVITY_PARAMS[activity["name"]]
    uuid.UUID(activity["id"])
    assert datetime.fromisoformat(activity["timestamp"]).tzinfo is not None


def activities(received: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [a for m in of(received, "activities") for a in m["activities"]]


def lines(call: Call, speaker: Speaker) -> list[str]:
    return [entry.text for entry in call.history if entry.speaker is speaker]


# --- a plain client, for single protocol steps ---------------------------------------------


@dataclass
class Vaic:
    """Raw Bot API messages over a websockets client, for steps the far end never takes."""

    ws: ClientConnection
    conversation_id: str = "conv-raw"

    async def send(self, kind: str, **fields: Any) -> None:
        await self.ws.send(
            json.dumps({"type": kind, "conversationId": self.conversation_id, **fields})
        )

    async def recv(self) -> dict[str, Any]:
        message = json.loads(await asyncio.wait_for(self.ws.recv(), 3.0))
        assert isinstance(message, dict)
        return message

    async def recv_type(self, kind: str) -> dict[str, Any]:
        """The next message of `kind`, skipping others (e.g. the greeting's audio)."""
        while (message := await self.recv())["type"] != kind:
            pass
        return message

    async def open(self, media_format: str = "raw/lpcm16") -> None:
        """session.initiate, the start activity and userStream.start, with their answers."""
        await self.send("session.initiate", supportedMediaFormats=[media_format], caller="+1555")
        assert await self.recv() == {"type": "session.accepted", "mediaFormat": media_format}
        await self.activity("start")
        await self.send("userStream.start")
        assert await self.recv_type("userStream.started") == {"type": "userStream.started"}

    async def activity(self, name: str, **fields: Any) -> None:
        await self.send("activities", activities=[{"type": "event", "name": name, **fields}])

    async def closed(self) -> int:
        """The close code, once the server has closed the socket."""
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(self.ws.recv(), 3.0)
        assert closed.value.rcvd is not None
        return closed.value.rcvd.code


@contextlib.asynccontextmanager
async def vaic(url: str, token: str | None = None) -> AsyncIterator[Vaic]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(url, additional_headers=headers) as ws:
        yield Vaic(ws)


# --- negotiation ---------------------------------------------------------------------------


@pytest.mark.parametrize("media_format", list(FORMATS))
async def test_the_call_speaks_the_negotiated_format(media_format: str) -> None:
    calls = Calls({"": []})
    far = far_end(media_format)
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await until(call, lambda: bool(of(messages(call), "playStream.stop")))
        await call.hangup()
        made = calls.made[far.conversation_id]
        assert await asyncio.wait_for(made.wait_closed(), 3.0) == "session.end: client-disconnected"

    fmt, frame_bytes = FORMATS[media_format]
    assert calls.media[far.conversation_id] == CallMedia(inbound=fmt, outbound=fmt, marks=False)
    received = messages(call)
    assert received[0] == {"type": "session.accepted", "mediaFormat": media_format}
    [greeting] = check_outbound(received, media_format)
    # "Hello." is one word at 0.1 s a word: five 20 ms chunks of `frame_bytes` each.
    assert greeting.stopped and greeting.chunks == 5
    assert sum(len(data) for data in far_played(call)) == 5 * frame_bytes
    assert not [h for _, h in call.heard if h.kind == "error"]


def far_played(call: DialSession) -> list[bytes]:
    return [base64.b64decode(m["audioChunk"]) for m in of(messages(call), "playStream.chunk")]


def test_the_first_offered_format_we_speak_is_chosen() -> None:
    translator = AudioCodesTranslator()
    initiate = {
        "type": "session.initiate",
        "conversationId": "c1",
        "supportedMediaFormats": ["wav/lpcm16", "raw/mulaw", "raw/lpcm16"],
    }
    answer = translator.inbound(json.dumps(initiate))
    assert answer == Reply('{"type":"session.accepted","mediaFormat":"raw/mulaw"}')


def test_no_common_format_is_refused_with_session_error() -> None:
    translator = AudioCodesTranslator()
    initiate = {
        "type": "session.initiate",
        "conversationId": "c1",
        "supportedMediaFormats": ["wav/lpcm16", "raw/alaw"],
    }
    with pytest.raises(StreamRefusedError) as refused:
        translator.inbound(json.dumps(initiate))
    assert refused.value.reply is not None
    error = json.loads(refused.value.reply)
    assert set(error) == OUTBOUND_KEYS["session.error"]
    assert error["type"] == "session.error" and error["conversationId"] == "c1"
    assert "wav/lpcm16" in error["reason"]


async def test_no_common_format_answers_session_error_and_closes() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, vaic(url) as client:
        await client.send("session.initiate", supportedMediaFormats=["wav/lpcm16"])
        error = await client.recv()
        assert set(error) == OUTBOUND_KEYS["session.error"]
        assert (error["type"], error["conversationId"]) == ("session.error", "conv-raw")
        assert await client.closed() == 1003
    assert calls.made == {}


# --- the user stream and speech ------------------------------------------------------------


async def test_user_stream_start_and_stop_are_acknowledged() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, vaic(url) as client:
        await client.open()  # asserts userStream.started
        await client.send("userStream.stop")
        assert await client.recv_type("userStream.stopped") == {"type": "userStream.stopped"}
        await client.send("session.end", reasonCode="client-disconnected")
        assert await client.closed() == 1000


async def test_speech_messages_follow_our_vad_and_stt() -> None:
    # Words are revealed from 0.4 s of caller audio: after the speech (from 0.3 s) has begun.
    calls = Calls({"": [Utterance(0.4, 0.9, "my card is lost")]})
    far = far_end()
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await call.silence(0.3)
        await call.play(speech(0.5), SPEECH_RATE)
        await until(call, lambda: bool(of(messages(call), "userStream.speech.recognition")))
        await call.hangup()

    received = messages(call)
    check_outbound(received, "raw/lpcm16")
    speech_kinds = [m["type"] for m in received if m["type"].startswith("userStream.speech.")]
    assert speech_kinds[0] == "userStream.speech.started"
    assert speech_kinds[-2:] == ["userStream.speech.stopped", "userStream.speech.recognition"]
    assert set(speech_kinds[1:-2]) == {"userStream.speech.hypothesis"}
    hypotheses = [
        m["alternatives"][0]["text"] for m in of(received, "userStream.speech.hypothesis")
    ]
    assert hypotheses[-1] == "my card is lost" and all(
        "my card is lost".startswith(text) for text in hypotheses
    )
    [recognition] = of(received, "userStream.speech.recognition")
    assert recognition["alternatives"] == [{"text": "my card is lost", "confidence": 1.0}]
    assert ("transcript", "my card is lost") in [(h.kind, h.text) for _, h in call.heard]


def test_speech_notices_need_an_open_user_stream() -> None:
    translator = started_translator()
    assert translator.outbound(CallerSpeech(started=True)) is None
    assert translator.outbound(CallerTranscript("hi", final=False)) is None
    translator.inbound(message("userStream.start"))
    assert translator.outbound(CallerSpeech(started=True)) == '{"type":"userStream.speech.started"}'
    translator.inbound(message("userStream.stop"))
    assert translator.outbound(CallerTranscript("hi", final=True, confidence=0.5)) is None


def test_confidence_only_on_a_recognition_that_has_one() -> None:
    translator = started_translator()
    translator.inbound(message("userStream.start", participant="caller"))
    partial = translator.outbound(CallerTranscript("yes", final=False, confidence=0.4))
    assert partial == (
        '{"type":"userStream.speech.hypothesis","participant":"caller",'
        '"alternatives":[{"text":"yes"}]}'
    )
    final = translator.outbound(CallerTranscript("yes", final=True))
    assert final == (
        '{"type":"userStream.speech.recognition","participant":"caller",'
        '"alternatives":[{"text":"yes"}]}'
    )


# --- whole calls ---------------------------------------------------------------------------


async def test_whole_call_greeting_speech_reply() -> None:
    calls = Calls({"": [Utterance(0.3, 0.8, "my card is lost")]})
    far = far_end(start_parameters={"callee": "+15550199"})
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await call.silence(0.3)
        await call.play(speech(0.5), SPEECH_RATE)
        await until(call, lambda: len(of(messages(call), "playStream.stop")) >= 2)
        await call.hangup()
        made = calls.made[far.conversation_id]
        assert await asyncio.wait_for(made.wait_closed(), 3.0) == "session.end: client-disconnected"

    assert calls.params[far.conversation_id] == {
        "caller": "+15550100",
        "botName": "opusagent",
        "callee": "+15550199",
    }
    assert lines(made, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(made, Speaker.CALLER) == ["my card is lost"]
    received = messages(call)
    greeting, reply = check_outbound(received, "raw/lpcm16")
    assert greeting.stopped and reply.stopped
    assert greeting.chunks == 5  # 0.1 s
    assert reply.chunks == 30  # six words, 0.6 s
    kinds = [m["type"] for m in received]
    assert kinds.index("userStream.started") < kinds.index("userStream.speech.started")
    assert kinds.index("userStream.speech.recognition") < max(
        i for i, m in enumerate(received) if m["type"] == "playStream.start"
    )
    assert not [h for _, h in call.heard if h.kind == "error"]


async def test_barge_in_stops_the_play_stream_mid_way() -> None:
    long_greeting = "Welcome to the bank, " + "please listen carefully to all of our options " * 3
    calls = Calls({"": [Utterance(0.3, 0.9, "stop please")]})
    calls.agent = ScriptedAgent(lambda t: long_greeting if t.kind is TurnKind.START else "Okay.")
    far = far_end("raw/mulaw")
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await call.silence(0.3)
        await call.play(speech(0.6), SPEECH_RATE)
        await until(call, lambda: len(of(messages(call), "playStream.stop")) >= 2)
        await call.hangup()

    made = calls.made[far.conversation_id]
    received = messages(call)
    greeting, reply = check_outbound(received, "raw/mulaw")
    # 25 words at 0.1 s a word would be 125 chunks: the stop cut the greeting short, while
    # the caller was still speaking.
    assert greeting.stopped and 0 < greeting.chunks < 100
    cut = received.index({"type": "playStream.stop", "streamId": greeting.stream_id})
    assert cut < received.index({"type": "userStream.speech.stopped"})
    assert reply.stopped and reply.chunks == 5
    first = made.history[0]
    assert first.interrupted and first.generated.startswith("Welcome")
    assert (made.history[-1].speaker, made.history[-1].text) == (Speaker.AGENT, "Okay.")


async def test_dtmf_activity_reaches_the_agent() -> None:
    calls = Calls({"": []})
    far = far_end()
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await call.silence(0.2)
        await call.dtmf("42#")
        await until(call, lambda: any(t.kind is TurnKind.DTMF for t in calls.agent.turns))
        await call.hangup()
    assert [t.dtmf for t in calls.agent.turns if t.kind is TurnKind.DTMF] == ["42"]


# --- what the agent does -------------------------------------------------------------------


async def test_agent_hang_up_is_a_hangup_activity_after_the_stream() -> None:
    calls = Calls({"": []})
    calls.agent = ScriptedAgent(lambda t: ["Goodbye.", HangUp("done")])
    far = far_end()
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await until(call, lambda: call.ended)
        made = calls.made[far.conversation_id]
        assert await asyncio.wait_for(made.wait_closed(), 3.0) == "agent_hangup: done"

    assert call.end_reason == "hangup: done"
    received = messages(call)
    [stream] = check_outbound(received, "raw/lpcm16")
    assert stream.stopped and stream.chunks == 5
    assert received[-1]["type"] == "activities"
    [activity] = activities(received)
    assert (activity["name"], activity["activityParams"]) == ("hangup", {"hangupReason": "done"})


async def test_agent_transfer_is_a_transfer_activity() -> None:
    calls = Calls({"": []})
    calls.agent = ScriptedAgent(
        lambda t: (
            ["One moment.", Transfer("tel:+15550123", "caller asked")]
            if t.kind is TurnKind.START
            else []
        )
    )
    far = far_end()
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await until(call, lambda: call.ended)
        made = calls.made[far.conversation_id]
        # The far end takes the transfer as done: VAIC ends the bot's session.
        assert await asyncio.wait_for(made.wait_closed(), 3.0) == "session.end: transferred"

    received = messages(call)
    check_outbound(received, "raw/lpcm16")
    [activity] = activities(received)
    assert activity["name"] == "transfer"
    assert activity["activityParams"] == {
        "transferTarget": "tel:+15550123",
        "handoverReason": "caller asked",
    }
    assert ("transfer", "tel:+15550123") in [(h.kind, h.text) for _, h in call.heard]


async def test_agent_send_dtmf_goes_between_play_streams() -> None:
    calls = Calls({"": []})
    calls.agent = ScriptedAgent(
        lambda t: ["Dialling.", SendDtmf("12#"), "Done."] if t.kind is TurnKind.START else []
    )
    far = far_end()
    async with serving(make_app(calls)) as url, dial(far, url) as call:
        await until(call, lambda: len(of(messages(call), "playStream.stop")) >= 2)
        await call.hangup()

    received = messages(call)
    first, second = check_outbound(received, "raw/lpcm16")
    assert first.stopped and second.stopped
    kinds = [m["type"] for m in received if m["type"] != "playStream.chunk"]
    assert kinds[-5:] == [
        "playStream.start",
        "playStream.stop",
        "activities",
        "playStream.start",
        "playStream.stop",
    ]
    [activity] = activities(received)
    assert (activity["name"], activity["activityParams"]) == ("sendDtmf", {"dtmfDigits": "12#"})
    assert ("dtmf", "12#") in [(h.kind, h.text) for _, h in call.heard]


def test_send_dtmf_is_split_into_activities_of_20_digits() -> None:
    translator = started_translator()
    [frame] = translator.outbound(SendDtmf("0123456789" * 2 + "*#*#5")) or []
    assert isinstance(frame, str)
    digits = [a["activityParams"]["dtmfDigits"] for a in json.loads(frame)["activities"]]
    assert digits == ["0123456789" * 2, "*#*#5"]


def test_send_dtmf_of_keys_vaic_cannot_play_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    translator = started_translator()
    with caplog.at_level(logging.ERROR):
        assert translator.outbound(SendDtmf("12A")) is None
    assert "cannot send DTMF" in caplog.text


# --- play streams --------------------------------------------------------------------------


def test_a_new_generation_stops_the_open_stream_and_starts_another() -> None:
    translator = started_translator()
    frame = AudioChunk(b"\x00" * 640, PCM16_16K)
    first = translator.outbound(AgentAudio(frame, 1))
    assert first is not None and [json.loads(f)["type"] for f in first] == [  # type: ignore[arg-type]
        "playStream.start",
        "playStream.chunk",
    ]
    second = translator.outbound(AgentAudio(frame, 2))
    assert isinstance(second, list)
    assert [json.loads(str(f)) for f in second][:2] == [
        {"type": "playStream.stop", "streamId": "play-1"},
        {"type": "playStream.start", "streamId": "play-2", "mediaFormat": "raw/lpcm16"},
    ]
    assert translator.outbound(ReplyAudioEnd(1)) is None  # not the open stream's reply
    assert translator.outbound(ReplyAudioEnd(2)) == [
        '{"type":"playStream.stop","streamId":"play-2"}'
    ]
    assert translator.outbound(ClearPlayback(2)) == []  # nothing open: nothing to stop
    translator.outbound(AgentAudio(frame, 3))
    assert translator.outbound(ClearPlayback(3)) == [
        '{"type":"playStream.stop","streamId":"play-3"}'
    ]
    assert translator.outbound(AgentText(2, "words")) is None


def test_audio_in_another_format_than_accepted_is_a_bug() -> None:
    translator = started_translator()
    with pytest.raises(ValueError, match="accepted format"):
        translator.outbound(AgentAudio(AudioChunk(b"\xff" * 160, MULAW_8K), 1))


# --- ending --------------------------------------------------------------------------------


async def test_session_end_ends_the_call_and_the_server_closes() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, vaic(url) as client:
        await client.open()
        await client.send("session.end", reasonCode="client-disconnected", reason="Client Side")
        assert await client.closed() == 1000
    assert await calls.made["conv-raw"].wait_closed() == "session.end: client-disconnected"


async def test_hangup_activity_ends_the_call_and_the_server_closes() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, vaic(url) as client:
        await client.open()
        await client.activity("hangup")
        assert await client.closed() == 1000
    assert await calls.made["conv-raw"].wait_closed() == "hangup"


async def test_socket_closed_without_session_end_ends_the_call() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url:
        async with vaic(url) as client:
            await client.open()
        made = calls.made["conv-raw"]
        assert await asyncio.wait_for(made.wait_closed(), 3.0) == "socket_closed"


# --- outside a conversation ----------------------------------------------------------------


async def test_connection_validate_is_answered() -> None:
    calls = Calls({})
    async with serving(make_app(calls)) as url, vaic(url) as client:
        await client.ws.send('{"type":"connection.validate"}')
        assert await client.recv() == {"type": "connection.validated", "success": True}
    assert calls.made == {}


async def test_resume_of_an_unknown_conversation_is_an_error() -> None:
    calls = Calls({})
    async with serving(make_app(calls)) as url, vaic(url) as client:
        await client.send("session.resume")
        assert await client.recv() == {
            "type": "session.error",
            "conversationId": "conv-raw",
            "reason": "conversation not found",
        }
    assert calls.made == {}


def test_resume_of_this_connections_conversation_is_accepted() -> None:
    translator = started_translator()
    assert translator.inbound(message("session.resume")) == Reply('{"type":"session.accepted"}')


async def test_bad_messages_are_ignored_and_the_call_goes_on() -> None:
    calls = Calls({"": []})
    async with serving(make_app(calls)) as url, vaic(url) as client:
        await client.send("userStream.start")  # before session.initiate
        await client.open()
        for bad in [
            "not json",
            "[1, 2]",
            '{"no": "type"}',
            '{"type": "bogus", "conversationId": "conv-raw"}',
            '{"type": "userStream.chunk", "conversationId": "conv-raw"}',
            '{"type": "userStream.chunk", "conversationId": "conv-raw", "audioChunk": "!!"}',
            '{"type": "userStream.chunk", "conversationId": "other", "audioChunk": "AAA="}',
            '{"type": "activities", "conversationId": "conv-raw", "activities": "none"}',
            '{"type": "session.end", "conversationId": "other"}',
            '{"type": "session.initiate", "conversationId": "second"}',
            b"\x00\x01binary",
        ]:
            await client.ws.send(bad)
        await client.activity("DTMF", value="x")  # not a key: ignored
        await client.activity("DTMF", value="5#")
        await client.recv_type("playStream.start")  # the greeting
        await client.recv_type("playStream.start")  # the answer to the keys
        made = calls.made["conv-raw"]
        assert not made.ended
        await client.send("session.end")
        assert await client.closed() == 1000
    assert [t.dtmf for t in calls.agent.turns if t.kind is TurnKind.DTMF] == ["5"]
    assert list(calls.made) == ["conv-raw"]


# --- authentication ------------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong", f"Basic {TOKEN}", TOKEN])
async def test_a_connection_without_the_token_is_refused(authorization: str | None) -> None:
    calls = Calls({})
    headers = {} if authorization is None else {"Authorization": authorization}
    async with serving(make_app(calls, token=TOKEN)) as url:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url, additional_headers=headers):
                pass
    assert refused.value.response.status_code == 403
    assert calls.made == {}


async def test_a_connection_with_the_token_is_served() -> None:
    calls = Calls({"": []})
    far = far_end(token=TOKEN)
    async with serving(make_app(calls, token=TOKEN)) as url, dial(far, url) as call:
        await until(call, lambda: bool(of(messages(call), "playStream.stop")))
        await call.hangup()
    assert far.conversation_id in calls.made


# --- isolation -----------------------------------------------------------------------------


@pytest.mark.slow
async def test_two_concurrent_conversations_stay_isolated() -> None:
    calls = Calls(
        {
            "alice": [Utterance(0.3, 0.8, "my card is lost")],
            "bob": [Utterance(0.3, 0.9, "book an appointment")],
        }
    )

    async def run(url: str, who: str, media_format: str) -> tuple[AudioCodesFarEnd, DialSession]:
        far = far_end(media_format, start_parameters={"script": who})
        async with dial(far, url) as call:
            await call.silence(0.3)
            await call.play(speech(0.6), SPEECH_RATE)
            await until(call, lambda: len(of(messages(call), "playStream.stop")) >= 2, 4.0)
            await call.hangup()
        return far, call

    async with serving(make_app(calls)) as url:
        (alice, a_call), (bob, b_call) = await asyncio.gather(
            run(url, "alice", "raw/mulaw"), run(url, "bob", "raw/lpcm16_24")
        )

    a, b = calls.made[alice.conversation_id], calls.made[bob.conversation_id]
    assert lines(a, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(b, Speaker.AGENT) == ["Hello.", "You said book an appointment."]
    for call, media_format, text in [
        (a_call, "raw/mulaw", "my card is lost"),
        (b_call, "raw/lpcm16_24", "book an appointment"),
    ]:
        received = messages(call)
        check_outbound(received, media_format)
        [recognition] = of(received, "userStream.speech.recognition")
        assert recognition["alternatives"][0]["text"] == text


# --- the far end ---------------------------------------------------------------------------


def test_far_end_flags_play_streams_that_break_the_protocol() -> None:
    far = AudioCodesFarEnd(["raw/lpcm16_8"], conversation_id="c1")
    assert far.audio_format == PCM16_8K
    initiate = json.loads(far.opening()[0])
    assert initiate == {
        "type": "session.initiate",
        "conversationId": "c1",
        "expectAudioMessages": True,
        "supportedMediaFormats": ["raw/lpcm16_8"],
        "caller": "+15550100",
        "botName": "opusagent",
    }
    reactions = far.receive('{"type":"session.accepted","mediaFormat":"raw/lpcm16_8"}')
    assert isinstance(reactions[-1], Ready)
    sent = [json.loads(r.frame) for r in reactions if isinstance(r, Send)]
    assert [m["type"] for m in sent] == ["activities", "userStream.start"]
    assert sent[0]["activities"][0]["name"] == "start"

    def kinds(frame: str) -> list[str]:
        return [type(r).__name__ for r in far.receive(frame)]

    chunk = '{"type":"playStream.chunk","streamId":"s1","audioChunk":"AAA="}'
    assert kinds(chunk) == ["Heard"]  # no stream open
    assert kinds('{"type":"playStream.start","streamId":"s1","mediaFormat":"raw/mulaw"}') == [
        "Heard"
    ]
    assert kinds('{"type":"playStream.start","streamId":"s1","mediaFormat":"raw/lpcm16_8"}') == []
    assert kinds('{"type":"playStream.start","streamId":"s2","mediaFormat":"raw/lpcm16_8"}') == [
        "Heard"
    ]
    assert far.receive(chunk) == [Play(b"\x00\x00")]
    assert kinds('{"type":"playStream.stop","streamId":"s2"}') == ["Heard"]
    assert kinds('{"type":"playStream.stop","streamId":"s1"}') == []
    assert kinds('{"type":"playStream.chunk","streamId":"s1","audioChunk":"AAA=","x":1}') == [
        "Heard"
    ]
    assert kinds('{"type":"session.error","conversationId":"c1","reason":"no"}') == [
        "Heard",
        "Ended",
    ]


def test_far_end_for_the_dial_command_sends_the_bearer_token() -> None:
    far = AudioCodesFarEnd.for_url("ws://127.0.0.1:8080/audiocodes", token=TOKEN)
    assert far.headers() == {"Authorization": f"Bearer {TOKEN}"}
    assert AudioCodesFarEnd.for_url("ws://127.0.0.1:8080/audiocodes").headers() == {}
    assert far.audio_format == PCM16_16K


def test_far_end_ends_a_call_accepted_in_a_format_it_did_not_offer() -> None:
    far = AudioCodesFarEnd(["raw/lpcm16", "raw/mulaw"], conversation_id="c1")
    reactions = far.receive('{"type":"session.accepted","mediaFormat":"raw/lpcm16_24"}')
    assert [type(r) for r in reactions] == [Heard, Ended]
    reactions = far.receive('{"type":"session.accepted","mediaFormat":"raw/mulaw"}')
    assert [type(r) for r in reactions] == [Heard, Ended]  # offered, but it streams lpcm16


# --- helpers for translator unit tests -----------------------------------------------------


def message(kind: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "conversationId": "c1", **fields})


def started_translator() -> AudioCodesTranslator:
    translator = AudioCodesTranslator()
    translator.inbound(message("session.initiate", supportedMediaFormats=["raw/lpcm16"]))
    start = translator.inbound(
        message("activities", activities=[{"type": "event", "name": "start"}])
    )
    assert isinstance(start, list) and isinstance(start[0], StartCall)
    return translator
