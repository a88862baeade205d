"""Contract tests for the Telnyx media streaming bridge (`WS /telnyx`, bidirectional RTP mode).

Protocol facts (CATALOG §5.1; https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket):
Telnyx sends `connected`, `start` (with `media_format`), `media` (base64 RTP payload, `chunk`
numbered, order not guaranteed), `dtmf`, `mark`, `error` and `stop`. We send
`{"event":"media","media":{"payload":…}}`, `{"event":"mark","mark":{"name":…}}` (sent back by
Telnyx once the media before it has played) and `{"event":"clear"}`. L16 is big-endian on the
wire. The expected shapes below are written out from the CATALOG, not taken from the bridge.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bridges.loopback import (
    REPLY_S,
    SPEAK_AT,
    SPEAK_FOR,
    SPEECH_RATE,
    Calls,
    app_with,
    count_audio_frames,
    errors_heard,
    lines,
    say_my_line,
    seconds_of,
    serving,
    speech,
    until,
)
from opusagent.audio.formats import ALAW_8K, MULAW_8K, PCM16_16K, AudioChunk, AudioFormat
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farend import Clear, Heard, Play, PlayMarker
from opusagent.bridges.farends.telnyx import TelnyxFarEnd
from opusagent.bridges.session import (
    CloseSocket,
    InvalidMessageError,
    StartCall,
    StreamRefusedError,
)
from opusagent.bridges.telnyx import ChunkOrder, TelnyxTranslator, mount_telnyx
from opusagent.call.events import (
    AgentAudio,
    AgentText,
    CallerAudio,
    CallerHungUp,
    CallerSpeech,
    CallMedia,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    Mark,
    MarkAcknowledged,
    ProviderError,
    ReplyAudioEnd,
    SendDtmf,
    Transfer,
)
from opusagent.call.stages import Speaker, TurnKind
from opusagent.testing import ScriptedAgent

TOKEN = "telnyx-stream-token"
FRAME_S = 0.02
STREAM = "stream-1"


def start(encoding: str = "PCMU", rate: int = 8000, channels: int = 1, **info: Any) -> str:
    body = {
        "user_id": "user-1",
        "call_control_id": "v3:call-1",
        "media_format": {"encoding": encoding, "sample_rate": rate, "channels": channels},
        **info,
    }
    return json.dumps(
        {"event": "start", "sequence_number": "1", "stream_id": STREAM, "start": body}
    )


def media(payload: bytes, chunk: int | None = None, track: str = "inbound") -> str:
    body: dict[str, Any] = {"track": track, "payload": base64.b64encode(payload).decode()}
    if chunk is not None:
        body.update(chunk=str(chunk), timestamp=str((chunk - 1) * 20))
    return json.dumps({"event": "media", "stream_id": STREAM, "media": body})


def started(encoding: str = "PCMU", rate: int = 8000) -> TelnyxTranslator:
    translator = TelnyxTranslator()
    assert isinstance(translator.inbound(start(encoding, rate)), StartCall)
    return translator


def audio_of(meaning: object) -> list[bytes]:
    items = meaning if isinstance(meaning, list) else [] if meaning is None else [meaning]
    assert all(isinstance(item, CallerAudio) for item in items), items
    return [item.chunk.data for item in items]


def check_outbound(call: DialSession, fmt: AudioFormat) -> list[dict[str, Any]]:
    """Every frame the server sent is one of Telnyx's three messages, with exactly its fields;
    media is whole 20 ms frames of the stream's codec."""
    messages = []
    for _, frame in call.received:
        assert isinstance(frame, str), frame
        message = json.loads(frame)
        event = message["event"]
        if event == "media":
            assert set(message) == {"event", "media"} and set(message["media"]) == {"payload"}
            payload = base64.b64decode(message["media"]["payload"], validate=True)
            assert len(payload) == fmt.bytes_for(FRAME_S)
        elif event == "mark":
            assert set(message) == {"event", "mark"} and set(message["mark"]) == {"name"}
            assert isinstance(message["mark"]["name"], str) and message["mark"]["name"]
        else:
            assert message == {"event": "clear"}
        messages.append(message)
    assert errors_heard(call.heard) == []
    return messages


def telnyx_app(calls: Calls, token: str | None = None) -> Any:
    return app_with(lambda app: mount_telnyx(app, calls, token=token))


# --- the translator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "rate", "fmt"),
    [
        ("PCMU", 8000, MULAW_8K),
        ("audio/x-mulaw", 8000, MULAW_8K),
        ("PCMA", 8000, ALAW_8K),
        ("L16", 16000, PCM16_16K),
        ("L16", 8000, AudioFormat(PCM16_16K.encoding, 8000)),
    ],
)
def test_start_starts_the_call_in_the_streams_format(
    encoding: str, rate: int, fmt: AudioFormat
) -> None:
    meaning = TelnyxTranslator().inbound(
        start(
            encoding,
            rate,
            client_state="c3RhdGU=",
            custom_parameters={"script": "alice"},
            **{"from": "+15550100", "to": "+15550199"},
        )
    )
    assert meaning == StartCall(
        "v3:call-1",
        CallMedia(inbound=fmt, outbound=fmt, marks=True, frame_ms=20),
        {"from": "+15550100", "to": "+15550199", "client_state": "c3RhdGU=", "script": "alice"},
    )


@pytest.mark.parametrize(
    ("encoding", "rate", "channels"),
    [
        ("G722", 16000, 1),
        ("OPUS", 48000, 1),
        ("PCMU", 16000, 1),
        ("L16", 44100, 1),
        ("L16", 16000, 2),
    ],
)
def test_an_unsupported_stream_is_refused(encoding: str, rate: int, channels: int) -> None:
    with pytest.raises(StreamRefusedError):
        TelnyxTranslator().inbound(start(encoding, rate, channels))


def test_l16_is_big_endian_on_the_wire_both_ways() -> None:
    translator = started("L16", 16000)
    samples = np.array([1, -2, 0x1234, -32768], dtype=np.int16)
    big, little = samples.astype(">i2").tobytes(), samples.astype("<i2").tobytes()
    assert audio_of(translator.inbound(media(big, 1))) == [little]
    out = translator.outbound(AgentAudio(AudioChunk(little, PCM16_16K), 1))
    assert isinstance(out, str)
    assert base64.b64decode(json.loads(out)["media"]["payload"]) == big


def test_media_is_put_back_in_chunk_order() -> None:
    translator = started()
    frames = {n: bytes([n]) * 160 for n in range(1, 5)}
    assert audio_of(translator.inbound(media(frames[1], 1))) == [frames[1]]
    assert audio_of(translator.inbound(media(frames[3], 3))) == []
    assert audio_of(translator.inbound(media(frames[2], 2))) == [frames[2], frames[3]]
    assert audio_of(translator.inbound(media(frames[2], 2))) == [], "a duplicate is dropped"
    assert audio_of(translator.inbound(media(frames[4], 4))) == [frames[4]]


def test_a_lost_chunk_is_given_up_after_the_window() -> None:
    order = ChunkOrder(window=3)
    assert order.push(1, b"1") == [b"1"]
    assert [order.push(n, str(n).encode()) for n in (3, 4, 5)] == [[], [], []]
    assert order.push(6, b"6") == [b"3", b"4", b"5", b"6"]
    assert order.push(2, b"2") == [], "too late: its turn has passed"
    assert order.push(7, b"7") == [b"7"]


def test_stop_delivers_held_media_then_hangs_up() -> None:
    translator = started()
    translator.inbound(media(b"\x01" * 160, 1))
    assert translator.inbound(media(b"\x03" * 160, 3)) is None
    stop = json.dumps({"event": "stop", "stream_id": STREAM, "stop": {"call_control_id": "v3:1"}})
    meaning = translator.inbound(stop)
    assert meaning == [CallerAudio(AudioChunk(b"\x03" * 160, MULAW_8K)), CallerHungUp("stop")]


def test_media_without_chunk_passes_straight_through_and_outbound_track_is_ignored() -> None:
    translator = started()
    assert audio_of(translator.inbound(media(b"\x02" * 160))) == [b"\x02" * 160]
    assert translator.inbound(media(b"\x05" * 160, 1, track="outbound")) is None


def test_dtmf_mark_and_error_become_call_events() -> None:
    translator = started()
    dtmf = {"event": "dtmf", "stream_id": STREAM, "occurred_at": "t", "dtmf": {"digit": "b"}}
    assert translator.inbound(json.dumps(dtmf)) == DtmfReceived("B")
    mark = {"event": "mark", "stream_id": STREAM, "mark": {"name": "c:1:2"}}
    assert translator.inbound(json.dumps(mark)) == MarkAcknowledged("c:1:2")
    error = {
        "event": "error",
        "stream_id": STREAM,
        "error": {"code": 100003, "title": "malformed_frame", "detail": "bad"},
    }
    assert translator.inbound(json.dumps(error)) == ProviderError(
        "Telnyx error 100003 malformed_frame bad"
    )
    assert translator.inbound('{"event":"connected","version":"1.0.0"}') is None


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1]",
        '{"event": "bogus"}',
        '{"event": "media", "media": {}}',
        '{"event": "media", "media": {"payload": "!!notb64"}}',
        '{"event": "media", "media": {"payload": "AA==", "chunk": "x"}}',
        '{"event": "media", "stream_id": "other", "media": {"payload": "AA=="}}',
        '{"event": "dtmf", "dtmf": {"digit": "x"}}',
        '{"event": "mark", "mark": {}}',
        b"\x00\x01",
        start(),
    ],
)
def test_malformed_messages_are_invalid(frame: str | bytes) -> None:
    with pytest.raises(InvalidMessageError):
        started().inbound(frame)


def test_an_odd_l16_payload_is_invalid() -> None:
    with pytest.raises(InvalidMessageError):
        started("L16", 16000).inbound(media(b"\x00\x01\x02", 1))


def test_media_before_start_is_invalid() -> None:
    with pytest.raises(InvalidMessageError):
        TelnyxTranslator().inbound(media(b"\xff" * 160, 1))


def test_outbound_messages_match_the_catalog() -> None:
    translator = started()
    audio = translator.outbound(AgentAudio(AudioChunk(b"\xff" * 160, MULAW_8K), 1))
    assert isinstance(audio, str)
    assert json.loads(audio) == {
        "event": "media",
        "media": {"payload": base64.b64encode(b"\xff" * 160).decode()},
    }
    mark = translator.outbound(Mark("c:1:1"))
    assert isinstance(mark, str)
    assert json.loads(mark) == {"event": "mark", "mark": {"name": "c:1:1"}}
    clear = translator.outbound(ClearPlayback(2))
    assert isinstance(clear, str)
    assert json.loads(clear) == {"event": "clear"}
    for notice in (ReplyAudioEnd(1), CallerSpeech(True), AgentText(1, "hi")):
        assert translator.outbound(notice) is None
    with pytest.raises(ValueError):
        translator.outbound(AgentAudio(AudioChunk(b"\x00" * 640, PCM16_16K), 1))


def test_hang_up_closes_the_stream_and_rest_actions_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    translator = started()
    with caplog.at_level(logging.WARNING):
        assert isinstance(translator.outbound(HangUp("done")), CloseSocket)
        assert translator.outbound(Transfer("+15550123")) is None
        assert translator.outbound(SendDtmf("12")) is None
    assert any("Call Control hangup" in r.message for r in caplog.records)
    assert len([r for r in caplog.records if "refused" in r.message]) == 2


# --- the far end ---------------------------------------------------------------------------


def test_far_end_speaks_the_catalog_shapes() -> None:
    far = TelnyxFarEnd(encoding="L16", sample_rate=16000, stream_id="s", token="t")
    assert far.headers() == {"x-telnyx-streaming-auth-token": "t"}
    assert TelnyxFarEnd(token="t", bearer=True).headers() == {"Authorization": "Bearer t"}
    connected, first = (json.loads(str(f)) for f in far.opening())
    assert connected == {
        "event": "connected",
        "version": "1.0.0",
        "connected": {"x-telnyx-streaming-auth-token": "t"},
    }
    assert first["event"] == "start" and first["sequence_number"] == "1"
    assert first["start"]["media_format"] == {
        "encoding": "L16",
        "sample_rate": 16000,
        "channels": 1,
    }
    little = np.array([1, 2], dtype="<i2").tobytes()
    frame = json.loads(str(far.audio(little)))
    assert frame["stream_id"] == "s" and frame["sequence_number"] == "2"
    assert frame["media"]["chunk"] == "1" and frame["media"]["track"] == "inbound"
    assert base64.b64decode(frame["media"]["payload"]) == np.array([1, 2], ">i2").tobytes()
    played = base64.b64encode(np.arange(320, dtype=">i2").tobytes()).decode()
    assert far.receive(json.dumps({"event": "media", "media": {"payload": played}})) == [
        Play(np.arange(320, dtype="<i2").tobytes())
    ]
    assert far.receive('{"event":"mark","mark":{"name":"m"}}') == [PlayMarker("m")]
    assert far.receive('{"event":"clear"}') == [Clear()]
    assert json.loads(str(far.marker_played("m")))["mark"] == {"name": "m"}
    [problem] = far.receive('{"event":"clear","streamSid":"x"}')
    assert isinstance(problem, Heard) and problem.kind == "error"


# --- whole calls ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("encoding", "rate", "fmt"), [("PCMU", 8000, MULAW_8K), ("L16", 16000, PCM16_16K)]
)
async def test_whole_call_greeting_utterance_reply(
    encoding: str, rate: int, fmt: AudioFormat
) -> None:
    calls = Calls()
    far = TelnyxFarEnd(encoding=encoding, sample_rate=rate, custom_parameters={"script": "alice"})
    sent = count_audio_frames(far)
    async with serving(telnyx_app(calls)) as base:
        async with dial(far, f"{base}/telnyx") as call:
            await say_my_line(call)
            await until(lambda: len(calls.made) == 1 and len(calls.only().history) >= 3)
            await call.hangup()
        telnyx_call = calls.only()
        assert await telnyx_call.wait_closed() == "stop"

    assert telnyx_call.call_id == far.call_control_id
    assert calls.params[telnyx_call.call_id]["script"] == "alice"
    assert calls.media[telnyx_call.call_id] == CallMedia(fmt, fmt, marks=True, frame_ms=20)
    assert lines(telnyx_call, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(telnyx_call, Speaker.CALLER) == ["my card is lost"]
    messages = check_outbound(call, fmt)
    audio = [m for m in messages if m["event"] == "media"]
    assert len(audio) * FRAME_S == pytest.approx(REPLY_S, abs=2 * FRAME_S)
    assert any(m["event"] == "mark" for m in messages), "marks follow the audio"
    assert calls.stt[telnyx_call.call_id].seconds == pytest.approx(
        seconds_of(sent, fmt), abs=FRAME_S
    )


async def test_barge_in_sends_clear() -> None:
    calls = Calls()
    long_greeting = "Welcome to the bank, " + "please listen carefully to all of our options " * 3
    calls.agent = ScriptedAgent(lambda t: long_greeting if t.kind is TurnKind.START else "Okay.")
    async with serving(telnyx_app(calls)) as base:
        async with dial(TelnyxFarEnd(), f"{base}/telnyx") as call:
            await say_my_line(call)
            await until(lambda: len(calls.only().history) >= 3)
        telnyx_call = calls.only()
        await telnyx_call.wait_closed()

    events = [m["event"] for m in check_outbound(call, MULAW_8K)]
    assert "clear" in events
    assert events[: events.index("clear")].count("media") * FRAME_S < 1.0
    first, reply = telnyx_call.history[0], telnyx_call.history[-1]
    assert first.interrupted and first.generated.startswith("Welcome")
    assert (reply.speaker, reply.text) == (Speaker.AGENT, "Okay.")


async def test_dtmf_reaches_the_agent() -> None:
    calls = Calls()
    async with serving(telnyx_app(calls)) as base:
        async with dial(TelnyxFarEnd(), f"{base}/telnyx") as call:
            await call.silence(0.2)
            await call.dtmf("42#")
            await until(lambda: any(t.kind is TurnKind.DTMF for t in calls.agent.turns))
        await calls.only().wait_closed()

    assert [t.dtmf for t in calls.agent.turns if t.kind is TurnKind.DTMF] == ["42"]
    check_outbound(call, MULAW_8K)


async def test_stop_ends_the_call_and_the_server_closes_the_socket() -> None:
    calls = Calls()
    far = TelnyxFarEnd()
    async with serving(telnyx_app(calls)) as base:
        async with dial(far, f"{base}/telnyx") as call:
            await call.silence(0.1)
            await until(lambda: len(calls.made) == 1)
            [stop] = far.hangup()
            await call.send(stop)
            reason = await asyncio.wait_for(call.wait_ended(), 3.0)
            assert reason not in ("hangup", "dropped"), "the server closed the socket"
        assert await calls.only().wait_closed() == "stop"


async def test_socket_closed_without_stop_ends_the_call() -> None:
    calls = Calls()
    async with serving(telnyx_app(calls)) as base:
        async with dial(TelnyxFarEnd(), f"{base}/telnyx") as call:
            await call.silence(0.1)
            await until(lambda: len(calls.made) == 1)
            await call.drop()
        assert await asyncio.wait_for(calls.only().wait_closed(), 3.0) == "socket_closed"


async def test_agent_hang_up_closes_the_stream() -> None:
    calls = Calls()
    calls.agent = ScriptedAgent(lambda t: ["Goodbye.", HangUp("done")])
    async with serving(telnyx_app(calls)) as base:
        async with dial(TelnyxFarEnd(), f"{base}/telnyx") as call:
            reason = await asyncio.wait_for(call.wait_ended(), 3.0)
            assert reason not in ("hangup", "dropped"), "the server closed the socket first"
        assert await calls.only().wait_closed() == "agent_hangup: done"
    assert check_outbound(call, MULAW_8K)


async def test_malformed_messages_are_ignored_and_the_call_goes_on() -> None:
    calls = Calls()
    async with serving(telnyx_app(calls)) as base:
        async with dial(TelnyxFarEnd(), f"{base}/telnyx") as call:
            for bad in [
                "not json",
                '{"event": "bogus"}',
                '{"event": "media", "media": {"payload": "!!notb64"}}',
                '{"event": "media", "stream_id": "other", "media": {"payload": "/w=="}}',
                '{"event": "dtmf", "dtmf": {"digit": "x"}}',
                '{"event": "stop", "stream_id": "other"}',
                start(),
                b"\x00\x01binary",
            ]:
                await call.send(bad)
            await say_my_line(call)
            await until(lambda: bool(lines(calls.only(), Speaker.CALLER)))
            assert not calls.only().ended
        telnyx_call = calls.only()
        await telnyx_call.wait_closed()

    assert lines(telnyx_call, Speaker.CALLER) == ["my card is lost"]
    assert len(calls.made) == 1
    check_outbound(call, MULAW_8K)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-telnyx-streaming-auth-token": "wrong"},
        {"Authorization": "Bearer wrong"},
        {"Authorization": TOKEN},
    ],
)
async def test_a_stream_without_the_token_is_refused(headers: dict[str, str]) -> None:
    calls = Calls()
    async with serving(telnyx_app(calls, TOKEN)) as base:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{base}/telnyx", additional_headers=headers):
                pass
    assert refused.value.response.status_code == 403
    assert calls.made == {}


@pytest.mark.parametrize("bearer", [False, True], ids=["telnyx-header", "bearer"])
async def test_a_stream_with_the_token_is_served(bearer: bool) -> None:
    calls = Calls()
    async with serving(telnyx_app(calls, TOKEN)) as base:
        async with dial(TelnyxFarEnd(token=TOKEN, bearer=bearer), f"{base}/telnyx") as call:
            await call.silence(0.1)
            await until(lambda: len(calls.made) == 1)
        assert await calls.only().wait_closed() == "stop"


@pytest.mark.slow
async def test_two_concurrent_calls_stay_isolated() -> None:
    calls = Calls()

    async def run(base: str, who: str, speak_at: float, speak_for: float) -> DialSession:
        far = TelnyxFarEnd(call_control_id=f"v3:{who}", custom_parameters={"script": who})
        async with dial(far, f"{base}/telnyx") as call:
            await call.silence(speak_at)
            await call.play(speech(speak_for), SPEECH_RATE)
            await until(lambda: len(getattr(calls.find(who), "history", ())) >= 3)
        return call

    async with serving(telnyx_app(calls)) as base:
        alice, bob = await asyncio.gather(
            run(base, "alice", SPEAK_AT, SPEAK_FOR), run(base, "bob", 0.4, 0.4)
        )
    for who, call in (("alice", alice), ("bob", bob)):
        marks = [m["mark"]["name"] for m in check_outbound(call, MULAW_8K) if m["event"] == "mark"]
        assert marks and all(name.startswith(f"v3:{who}:") for name in marks)
    a, b = calls.made["v3:alice"], calls.made["v3:bob"]
    assert lines(a, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(b, Speaker.AGENT) == ["Hello.", "You said book an appointment."]
    assert lines(a, Speaker.CALLER) == ["my card is lost"]
    assert lines(b, Speaker.CALLER) == ["book an appointment"]
