"""Contract tests for the Vonage Voice API WebSocket bridge (`WS /vonage`).

Protocol facts (CATALOG §5.2; https://developer.vonage.com/en/voice/voice-api/concepts/websockets):
Vonage sends `{"event":"websocket:connected","content-type":"audio/l16;rate=N"}` with the NCCO
headers flattened in, then binary 20 ms frames of 16-bit little-endian PCM and
`websocket:dtmf` text events; it plays binary frames of exactly 20 ms (HARD) and answers
`{"action":"clear"}` with `websocket:cleared`. The expected shapes below are written out from the
CATALOG, not taken from the bridge.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

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
from opusagent.audio.formats import PCM16_8K, PCM16_16K, PCM16_24K, AudioChunk, AudioFormat
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farend import Clear, Heard, Play, Send
from opusagent.bridges.farends.vonage import VonageFarEnd
from opusagent.bridges.session import (
    CloseSocket,
    InvalidMessageError,
    StartCall,
    StreamRefusedError,
)
from opusagent.bridges.vonage import VonageTranslator, mount_vonage
from opusagent.call.events import (
    AgentAudio,
    AgentText,
    CallerAudio,
    CallerSpeech,
    CallMedia,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    Mark,
    ReplyAudioEnd,
    SendDtmf,
    Transfer,
)
from opusagent.call.stages import Speaker, TurnKind
from opusagent.testing import ScriptedAgent

TOKEN = "vonage-token"
FRAME_S = 0.02
CLEAR = {"action": "clear"}


def connected(content_type: str = "audio/l16;rate=16000", **headers: Any) -> str:
    return json.dumps({"event": "websocket:connected", "content-type": content_type, **headers})


def started(rate: int = 16000) -> VonageTranslator:
    translator = VonageTranslator()
    assert isinstance(translator.inbound(connected(f"audio/l16;rate={rate}")), StartCall)
    return translator


def check_outbound(call: DialSession, fmt: AudioFormat) -> list[bytes | dict[str, Any]]:
    """Audio is binary frames of exactly 20 ms; the only text message is `clear`."""
    messages: list[bytes | dict[str, Any]] = []
    for _, frame in call.received:
        if isinstance(frame, bytes):
            assert len(frame) == fmt.bytes_for(FRAME_S)
            messages.append(frame)
        else:
            assert json.loads(frame) == CLEAR
            messages.append(CLEAR)
    assert errors_heard(call.heard) == []
    return messages


def vonage_app(calls: Calls, token: str | None = None) -> Any:
    return app_with(lambda app: mount_vonage(app, calls, token=token))


# --- the translator ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("audio/l16;rate=8000", PCM16_8K),
        ("audio/l16;rate=16000", PCM16_16K),
        ("audio/l16;rate=24000", PCM16_24K),
        ("audio/L16; rate=16000", PCM16_16K),
    ],
)
def test_connected_starts_the_call_at_its_rate(content_type: str, fmt: AudioFormat) -> None:
    meaning = VonageTranslator().inbound(
        connected(content_type, script="alice", uuid="abc-123", tries=2, extra={"a": 1})
    )
    assert isinstance(meaning, StartCall)
    assert re.fullmatch(r"vonage-[0-9a-f]{32}", meaning.call_id)
    assert meaning.media == CallMedia(inbound=fmt, outbound=fmt, marks=False, frame_ms=20)
    assert meaning.params == {
        "script": "alice",
        "uuid": "abc-123",
        "tries": "2",
        "extra": '{"a": 1}',
    }


@pytest.mark.parametrize(
    "content_type",
    ["audio/l16;rate=44100", "audio/l16", "audio/pcmu;rate=8000", "audio/l16;rate=abc", ""],
)
def test_an_unsupported_content_type_is_refused(content_type: str) -> None:
    with pytest.raises(StreamRefusedError):
        VonageTranslator().inbound(connected(content_type))


def test_binary_frames_are_caller_audio_and_dtmf_is_a_key() -> None:
    translator = started(8000)
    pcm = np.arange(160, dtype="<i2").tobytes()
    assert translator.inbound(pcm) == CallerAudio(AudioChunk(pcm, PCM16_8K))
    dtmf = '{"event":"websocket:dtmf","digit":"#","duration":260}'
    assert translator.inbound(dtmf) == DtmfReceived("#")
    assert translator.inbound('{"event":"websocket:cleared"}') is None
    assert translator.inbound('{"event":"websocket:notify","payload":{}}') is None


def test_a_second_connected_of_the_same_format_is_ignored() -> None:
    translator = started()
    assert translator.inbound(connected()) is None
    with pytest.raises(InvalidMessageError):
        translator.inbound(connected("audio/l16;rate=8000"))


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1]",
        '{"event": "bogus"}',
        '{"action": "clear"}',
        '{"event": "websocket:dtmf"}',
        '{"event": "websocket:dtmf", "digit": "x"}',
        '{"event": "websocket:connected"}',
        b"",
        b"\x00\x01\x02",
    ],
)
def test_malformed_messages_are_invalid(frame: str | bytes) -> None:
    with pytest.raises(InvalidMessageError):
        started().inbound(frame)


def test_audio_before_connected_is_invalid() -> None:
    with pytest.raises(InvalidMessageError):
        VonageTranslator().inbound(bytes(640))


def test_outbound_audio_is_exactly_20_ms_binary_and_clear_is_the_action() -> None:
    translator = started(16000)
    frame = np.arange(320, dtype="<i2").tobytes()
    assert translator.outbound(AgentAudio(AudioChunk(frame, PCM16_16K), 1)) == frame
    for wrong in (frame[:-2], frame + frame):
        with pytest.raises(ValueError):
            translator.outbound(AgentAudio(AudioChunk(wrong, PCM16_16K), 1))
    with pytest.raises(ValueError):
        translator.outbound(AgentAudio(AudioChunk(bytes(320), PCM16_8K), 1))
    clear = translator.outbound(ClearPlayback(2))
    assert isinstance(clear, str) and json.loads(clear) == CLEAR
    for nothing in (Mark("m"), ReplyAudioEnd(1), CallerSpeech(True), AgentText(1, "hi")):
        assert translator.outbound(nothing) is None


def test_hang_up_closes_the_socket_and_rest_actions_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    translator = started()
    with caplog.at_level(logging.WARNING):
        assert isinstance(translator.outbound(HangUp("done")), CloseSocket)
        assert translator.outbound(Transfer("+15550123")) is None
        assert translator.outbound(SendDtmf("12")) is None
    assert any("Voice REST API" in r.message for r in caplog.records)
    assert len([r for r in caplog.records if "refused" in r.message]) == 2


# --- the far end ---------------------------------------------------------------------------


def test_far_end_speaks_the_catalog_shapes() -> None:
    far = VonageFarEnd(sample_rate=8000, headers={"script": "bob"}, token="t")
    assert far.headers() == {"Authorization": "Bearer t"}
    [opening] = far.opening()
    assert json.loads(str(opening)) == {
        "event": "websocket:connected",
        "content-type": "audio/l16;rate=8000",
        "script": "bob",
    }
    assert far.audio(b"\x01\x02") == b"\x01\x02"
    assert [json.loads(str(f)) for f in far.dtmf("5")] == [
        {"event": "websocket:dtmf", "digit": "5", "duration": 260}
    ]
    assert far.hangup() == []
    assert far.receive(bytes(320)) == [Play(bytes(320))]
    assert far.receive('{"action":"clear"}') == [Clear(), Send('{"event": "websocket:cleared"}')]
    for wrong in (bytes(318), bytes(640), '{"event":"clearAudio"}'):
        [problem] = far.receive(wrong)
        assert isinstance(problem, Heard) and problem.kind == "error"


# --- whole calls ---------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "fmt"), [(8000, PCM16_8K), (16000, PCM16_16K)])
async def test_whole_call_greeting_utterance_reply(rate: int, fmt: AudioFormat) -> None:
    calls = Calls()
    far = VonageFarEnd(sample_rate=rate, headers={"script": "alice"})
    sent = count_audio_frames(far)
    async with serving(vonage_app(calls)) as base:
        async with dial(far, f"{base}/vonage") as call:
            await say_my_line(call)
            await until(lambda: len(calls.made) == 1 and len(calls.only().history) >= 3)
        vonage_call = calls.only()
        assert await vonage_call.wait_closed() == "socket_closed"

    assert calls.params[vonage_call.call_id] == {"script": "alice"}
    assert calls.media[vonage_call.call_id] == CallMedia(fmt, fmt, marks=False, frame_ms=20)
    assert lines(vonage_call, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(vonage_call, Speaker.CALLER) == ["my card is lost"]
    frames = check_outbound(call, fmt)
    assert all(isinstance(f, bytes) for f in frames)
    assert len(frames) * FRAME_S == pytest.approx(REPLY_S, abs=2 * FRAME_S)
    assert calls.stt[vonage_call.call_id].seconds == pytest.approx(
        seconds_of(sent, fmt), abs=FRAME_S
    )


async def test_barge_in_sends_clear() -> None:
    calls = Calls()
    long_greeting = "Welcome to the bank, " + "please listen carefully to all of our options " * 3
    calls.agent = ScriptedAgent(lambda t: long_greeting if t.kind is TurnKind.START else "Okay.")
    async with serving(vonage_app(calls)) as base:
        async with dial(VonageFarEnd(), f"{base}/vonage") as call:
            await say_my_line(call)
            await until(lambda: len(calls.only().history) >= 3)
        vonage_call = calls.only()
        await vonage_call.wait_closed()

    messages = check_outbound(call, PCM16_16K)
    assert CLEAR in messages
    assert messages.index(CLEAR) * FRAME_S < 1.0, "the greeting was cut before it all went out"
    first, reply = vonage_call.history[0], vonage_call.history[-1]
    assert first.interrupted and first.generated.startswith("Welcome")
    assert (reply.speaker, reply.text) == (Speaker.AGENT, "Okay.")


async def test_dtmf_reaches_the_agent() -> None:
    calls = Calls()
    async with serving(vonage_app(calls)) as base:
        async with dial(VonageFarEnd(), f"{base}/vonage") as call:
            await call.silence(0.2)
            await call.dtmf("42#")
            await until(lambda: any(t.kind is TurnKind.DTMF for t in calls.agent.turns))
        await calls.only().wait_closed()

    assert [t.dtmf for t in calls.agent.turns if t.kind is TurnKind.DTMF] == ["42"]
    check_outbound(call, PCM16_16K)


async def test_vonage_closing_the_socket_ends_the_call() -> None:
    calls = Calls()
    async with serving(vonage_app(calls)) as base:
        async with dial(VonageFarEnd(), f"{base}/vonage") as call:
            await call.silence(0.1)
            await until(lambda: len(calls.made) == 1)
            await call.hangup()
        assert await asyncio.wait_for(calls.only().wait_closed(), 3.0) == "socket_closed"


async def test_agent_hang_up_closes_the_socket() -> None:
    calls = Calls()
    calls.agent = ScriptedAgent(lambda t: ["Goodbye.", HangUp("done")])
    async with serving(vonage_app(calls)) as base:
        async with dial(VonageFarEnd(), f"{base}/vonage") as call:
            reason = await asyncio.wait_for(call.wait_ended(), 3.0)
            assert reason not in ("hangup", "dropped"), "the server closed the socket first"
        assert await calls.only().wait_closed() == "agent_hangup: done"
    assert check_outbound(call, PCM16_16K)


async def test_malformed_messages_are_ignored_and_the_call_goes_on() -> None:
    calls = Calls()
    async with serving(vonage_app(calls)) as base:
        async with dial(VonageFarEnd(), f"{base}/vonage") as call:
            for bad in [
                "not json",
                '{"event": "bogus"}',
                '{"event": "websocket:dtmf", "digit": "x"}',
                connected("audio/l16;rate=8000"),
                b"\x00\x01\x02",
            ]:
                await call.send(bad)
            await say_my_line(call)
            await until(lambda: bool(lines(calls.only(), Speaker.CALLER)))
            assert not calls.only().ended
        vonage_call = calls.only()
        await vonage_call.wait_closed()

    assert lines(vonage_call, Speaker.CALLER) == ["my card is lost"]
    check_outbound(call, PCM16_16K)


@pytest.mark.parametrize("presented", [None, "Bearer wrong", TOKEN, f"Basic {TOKEN}"])
async def test_a_connection_without_the_token_is_refused(presented: str | None) -> None:
    calls = Calls()
    headers = {} if presented is None else {"Authorization": presented}
    async with serving(vonage_app(calls, TOKEN)) as base:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(f"{base}/vonage", additional_headers=headers):
                pass
    assert refused.value.response.status_code == 403
    assert calls.made == {}


async def test_a_connection_with_the_token_is_served() -> None:
    calls = Calls()
    async with serving(vonage_app(calls, TOKEN)) as base:
        async with dial(VonageFarEnd(token=TOKEN), f"{base}/vonage") as call:
            await call.silence(0.1)
            await until(lambda: len(calls.made) == 1)
        assert await calls.only().wait_closed() == "socket_closed"


async def test_an_unsupported_content_type_closes_with_1003() -> None:
    calls = Calls()
    async with (
        serving(vonage_app(calls)) as base,
        connect(f"{base}/vonage") as ws,
    ):
        await ws.send(connected("audio/l16;rate=44100"))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3.0)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert calls.made == {}


@pytest.mark.slow
async def test_two_concurrent_calls_stay_isolated() -> None:
    calls = Calls()

    async def run(base: str, who: str, speak_at: float, speak_for: float) -> DialSession:
        far = VonageFarEnd(headers={"script": who})
        async with dial(far, f"{base}/vonage") as call:
            await call.silence(speak_at)
            await call.play(speech(speak_for), SPEECH_RATE)
            await until(lambda: len(getattr(calls.find(who), "history", ())) >= 3)
        return call

    async with serving(vonage_app(calls)) as base:
        alice, bob = await asyncio.gather(
            run(base, "alice", SPEAK_AT, SPEAK_FOR), run(base, "bob", 0.4, 0.4)
        )
    for call in (alice, bob):
        check_outbound(call, PCM16_16K)
    a, b = calls.find("alice"), calls.find("bob")
    assert a is not None and b is not None and a.call_id != b.call_id
    assert lines(a, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(b, Speaker.AGENT) == ["Hello.", "You said book an appointment."]
    assert lines(a, Speaker.CALLER) == ["my card is lost"]
    assert lines(b, Speaker.CALLER) == ["book an appointment"]
