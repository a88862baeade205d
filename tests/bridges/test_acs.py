"""Contract tests for the Azure Communication Services media streaming bridge (`WS /acs`).

Protocol facts (CATALOG §4; https://learn.microsoft.com/azure/communication-services/how-tos/call-automation/audio-streaming-quickstart):
ACS sends `AudioMetadata` first, then `AudioData` (base64 PCM16LE at 16 or 24 kHz, `silent` on
silence buffers) and `DtmfData`; keys are read case-insensitively (camelCase from the JS SDK,
PascalCase from .NET). We send `{"kind":"AudioData","audioData":{"data":…}}` at the session rate
and `{"kind":"StopAudio","stopAudio":{}}` on barge-in. The expected shapes below are written out
from the CATALOG, not taken from the bridge's models.
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
from opusagent.audio.formats import PCM16_16K, PCM16_24K, AudioChunk, AudioFormat
from opusagent.bridges.acs import AcsTranslator, mount_acs
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farend import Clear, Heard, Play
from opusagent.bridges.farends.acs import AcsFarEnd
from opusagent.bridges.session import (
    CloseSocket,
    InvalidMessageError,
    StartCall,
    StreamRefusedError,
)
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

TOKEN = "acs-test-token"
FRAME_S = 0.02


def metadata(rate: int = 16000, **fields: Any) -> str:
    meta = {
        "subscriptionId": "sub-1",
        "encoding": "PCM",
        "sampleRate": rate,
        "channels": 1,
        "length": rate // 50 * 2,
        **fields,
    }
    return json.dumps({"kind": "AudioMetadata", "audioMetadata": meta})


def started(rate: int = 16000) -> AcsTranslator:
    translator = AcsTranslator()
    assert isinstance(translator.inbound(metadata(rate)), StartCall)
    return translator


def audio_data(data: bytes, **fields: Any) -> str:
    body = {"data": base64.b64encode(data).decode(), "silent": False, **fields}
    return json.dumps({"kind": "AudioData", "audioData": body})


def check_outbound(call: DialSession, fmt: AudioFormat) -> list[dict[str, Any]]:
    """Every frame the server sent is text holding exactly one of ACS's two messages; audio is
    whole 20 ms frames of PCM16 at the session rate."""
    messages = []
    for _, frame in call.received:
        assert isinstance(frame, str), frame
        message = json.loads(frame)
        if message["kind"] == "AudioData":
            assert set(message) == {"kind", "audioData"}
            assert set(message["audioData"]) == {"data"}
            audio = base64.b64decode(message["audioData"]["data"], validate=True)
            assert len(audio) == fmt.bytes_for(FRAME_S)
        else:
            assert message == {"kind": "StopAudio", "stopAudio": {}}
        messages.append(message)
    assert errors_heard(call.heard) == []
    return messages


def acs_url(base: str, script: str = "") -> str:
    return f"{base}/acs?script={script}" if script else f"{base}/acs"


# --- the translator ------------------------------------------------------------------------


@pytest.mark.parametrize(("rate", "fmt"), [(16000, PCM16_16K), (24000, PCM16_24K)])
def test_audio_metadata_starts_the_call_at_its_rate(rate: int, fmt: AudioFormat) -> None:
    meaning = AcsTranslator({"agent": "bank"}).inbound(metadata(rate))
    assert meaning == StartCall(
        "sub-1", CallMedia(inbound=fmt, outbound=fmt, marks=False, frame_ms=20), {"agent": "bank"}
    )


def test_kind_and_keys_are_read_in_any_case() -> None:
    translator = AcsTranslator()
    pascal_meta = {
        "SubscriptionId": "sub-1",
        "Encoding": "PCM",
        "SampleRate": 24000,
        "Channels": 1,
        "Length": 960,
    }
    start = translator.inbound(json.dumps({"Kind": "AudioMetadata", "AudioMetadata": pascal_meta}))
    assert isinstance(start, StartCall) and start.media.inbound == PCM16_24K
    pcm = np.arange(480, dtype="<i2").tobytes()
    data = base64.b64encode(pcm).decode()
    expected = CallerAudio(AudioChunk(pcm, PCM16_24K))
    assert translator.inbound(audio_data(pcm)) == expected
    assert translator.inbound(json.dumps({"Kind": "AudioData", "AudioData": {"Data": data}})) == (
        expected
    )
    assert translator.inbound(json.dumps({"KIND": "audiodata", "audiodata": {"data": data}})) == (
        expected
    )
    assert translator.inbound('{"Kind":"DtmfData","DtmfData":{"Data":"#"}}') == DtmfReceived("#")
    assert translator.inbound('{"kind":"dtmfData","dtmfData":{"data":"b"}}') == DtmfReceived("B")


@pytest.mark.parametrize(("rate", "length", "packet"), [(16000, 640, 640), (24000, None, 960)])
def test_a_silent_packet_without_data_is_a_packet_of_silence(
    rate: int, length: int | None, packet: int
) -> None:
    translator = AcsTranslator()
    translator.inbound(metadata(rate, length=length))
    silent = translator.inbound('{"kind":"AudioData","audioData":{"silent":true}}')
    assert isinstance(silent, CallerAudio)
    assert silent.chunk.data == bytes(packet) and silent.chunk.duration == pytest.approx(FRAME_S)


def test_a_silent_packet_with_data_keeps_its_data() -> None:
    translator = started()
    zeros = bytes(640)
    assert translator.inbound(audio_data(zeros, silent=True)) == CallerAudio(
        AudioChunk(zeros, PCM16_16K)
    )


@pytest.mark.parametrize(
    "fields",
    [{"encoding": "OPUS"}, {"sampleRate": 8000}, {"sampleRate": 48000}, {"channels": 2}],
)
def test_an_unsupported_stream_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(StreamRefusedError):
        AcsTranslator().inbound(metadata(**fields))


def test_transcription_messages_are_not_for_the_media_bridge() -> None:
    translator = started()
    assert translator.inbound('{"kind":"TranscriptionMetadata","transcriptionMetadata":{}}') is None
    assert translator.inbound('{"kind":"TranscriptionData","transcriptionData":{}}') is None


def test_a_second_metadata_of_the_same_format_is_ignored() -> None:
    translator = started()
    assert translator.inbound(metadata()) is None
    with pytest.raises(InvalidMessageError):
        translator.inbound(metadata(24000))


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '{"no": "kind"}',
        '{"kind": 5}',
        '{"kind": "Bogus"}',
        '{"kind": "AudioData"}',
        '{"kind": "AudioData", "audioData": {"data": "!!notb64"}}',
        '{"kind": "AudioData", "audioData": {"data": "AAEC"}}',  # 3 bytes: not whole samples
        '{"kind": "AudioData", "audioData": {"data": ""}}',
        '{"kind": "DtmfData", "dtmfData": {"data": "55"}}',
        '{"kind": "DtmfData", "dtmfData": {}}',
        '{"kind": "AudioMetadata", "audioMetadata": {"encoding": "PCM"}}',
        b"\x00\x01",
    ],
)
def test_malformed_messages_are_invalid(frame: str | bytes) -> None:
    with pytest.raises(InvalidMessageError):
        started().inbound(frame)


def test_media_before_metadata_is_invalid() -> None:
    with pytest.raises(InvalidMessageError):
        AcsTranslator().inbound(audio_data(bytes(640)))


def test_outbound_messages_match_the_catalog() -> None:
    translator = started(24000)
    pcm = np.arange(480, dtype="<i2").tobytes()
    audio = translator.outbound(AgentAudio(AudioChunk(pcm, PCM16_24K), 1))
    assert isinstance(audio, str)
    assert json.loads(audio) == {
        "kind": "AudioData",
        "audioData": {"data": base64.b64encode(pcm).decode()},
    }
    stop = translator.outbound(ClearPlayback(2))
    assert isinstance(stop, str)
    assert json.loads(stop) == {"kind": "StopAudio", "stopAudio": {}}
    for silent in (Mark("m"), ReplyAudioEnd(1), CallerSpeech(True), AgentText(1, "hi")):
        assert translator.outbound(silent) is None
    with pytest.raises(ValueError):
        translator.outbound(AgentAudio(AudioChunk(pcm, PCM16_16K), 1))


def test_hang_up_closes_the_stream_and_rest_actions_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    translator = started()
    with caplog.at_level(logging.WARNING):
        assert isinstance(translator.outbound(HangUp("done")), CloseSocket)
        assert translator.outbound(Transfer("+15550123")) is None
        assert translator.outbound(SendDtmf("12")) is None
    assert any("Call Automation hangUp" in r.message for r in caplog.records)
    assert len([r for r in caplog.records if "refused" in r.message]) == 2


# --- the far end ---------------------------------------------------------------------------


def test_far_end_speaks_the_catalog_shapes() -> None:
    far = AcsFarEnd(sample_rate=24000, subscription_id="sub-9", token="t")
    assert far.headers() == {"Authorization": "Bearer t"}
    [opening] = far.opening()
    assert isinstance(opening, str)
    assert json.loads(opening) == {
        "kind": "AudioMetadata",
        "audioMetadata": {
            "subscriptionId": "sub-9",
            "encoding": "PCM",
            "sampleRate": 24000,
            "channels": 1,
            "length": 960,
        },
    }
    voice = np.arange(480, dtype="<i2").tobytes()
    frame = far.audio(voice)
    assert isinstance(frame, str)
    body = json.loads(frame)["audioData"]
    assert set(body) == {"data", "timestamp", "participantRawID", "silent"}
    assert base64.b64decode(body["data"]) == voice and body["silent"] is False
    assert json.loads(str(far.audio(bytes(960))))["audioData"]["silent"] is True
    quiet = AcsFarEnd(silent_without_data=True)
    assert "data" not in json.loads(str(quiet.audio(bytes(640))))["audioData"]
    assert "data" in json.loads(str(quiet.audio(voice[:640])))["audioData"]
    assert json.loads(str(far.dtmf("5")[0])) == {"kind": "DtmfData", "dtmfData": {"data": "5"}}
    assert far.hangup() == []
    assert far.receive('{"kind":"AudioData","audioData":{"data":"AAA="}}') == [Play(b"\0\0")]
    assert far.receive('{"kind":"StopAudio","stopAudio":{}}') == [Clear()]
    [problem] = far.receive('{"kind":"Bogus"}')
    assert isinstance(problem, Heard) and problem.kind == "error"


# --- whole calls ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "pascal_case"), [(16000, False), (24000, True)], ids=["16k", "24k-PascalCase"]
)
async def test_whole_call_greeting_utterance_reply(rate: int, pascal_case: bool) -> None:
    calls = Calls()
    far = AcsFarEnd(sample_rate=rate, pascal_case=pascal_case)
    sent = count_audio_frames(far)
    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        async with dial(far, acs_url(base, "alice")) as call:
            await say_my_line(call)
            await until(lambda: len(calls.made) == 1 and len(calls.only().history) >= 3)
        acs_call = calls.only()
        assert await acs_call.wait_closed() == "socket_closed"

    fmt = AudioFormat(PCM16_16K.encoding, rate)
    assert acs_call.call_id == far.subscription_id
    assert calls.params[acs_call.call_id] == {"script": "alice"}
    assert calls.media[acs_call.call_id] == CallMedia(fmt, fmt, marks=False, frame_ms=20)
    assert lines(acs_call, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(acs_call, Speaker.CALLER) == ["my card is lost"]
    messages = check_outbound(call, fmt)
    assert {m["kind"] for m in messages} == {"AudioData"}
    assert len(messages) * FRAME_S == pytest.approx(REPLY_S, abs=2 * FRAME_S)
    assert calls.stt[acs_call.call_id].seconds == pytest.approx(seconds_of(sent, fmt), abs=FRAME_S)


async def test_silent_packets_without_data_still_count_as_time() -> None:
    calls = Calls()
    far = AcsFarEnd(silent_without_data=True)
    sent = count_audio_frames(far)
    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        async with dial(far, acs_url(base)) as call:
            await call.silence(0.4)
            await until(lambda: len(calls.made) == 1)
        await calls.only().wait_closed()

    assert len(sent) >= 20 and not any(any(frame) for frame in sent), "all sent without data"
    assert calls.stt[calls.only().call_id].seconds == pytest.approx(
        seconds_of(sent, PCM16_16K), abs=1e-9
    )


async def test_barge_in_sends_stop_audio() -> None:
    calls = Calls()
    long_greeting = "Welcome to the bank, " + "please listen carefully to all of our options " * 3
    calls.agent = ScriptedAgent(lambda t: long_greeting if t.kind is TurnKind.START else "Okay.")
    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        async with dial(AcsFarEnd(), acs_url(base)) as call:
            await say_my_line(call)
            await until(lambda: len(calls.only().history) >= 3)
        acs_call = calls.only()
        await acs_call.wait_closed()

    kinds = [m["kind"] for m in check_outbound(call, PCM16_16K)]
    assert "StopAudio" in kinds
    assert kinds.index("StopAudio") * FRAME_S < 1.0, "the greeting was cut before it all went out"
    first, reply = acs_call.history[0], acs_call.history[-1]
    assert first.interrupted and first.generated.startswith("Welcome")
    assert (reply.speaker, reply.text) == (Speaker.AGENT, "Okay.")


async def test_dtmf_reaches_the_agent() -> None:
    calls = Calls()
    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        async with dial(AcsFarEnd(), acs_url(base)) as call:
            await call.silence(0.2)
            await call.dtmf("42#")
            await until(lambda: any(t.kind is TurnKind.DTMF for t in calls.agent.turns))
        await calls.only().wait_closed()

    assert [t.dtmf for t in calls.agent.turns if t.kind is TurnKind.DTMF] == ["42"]
    check_outbound(call, PCM16_16K)


async def test_acs_closing_the_socket_ends_the_call() -> None:
    calls = Calls()
    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        async with dial(AcsFarEnd(), acs_url(base)) as call:
            await call.silence(0.1)
            await until(lambda: len(calls.made) == 1)
            await call.hangup()
        assert await asyncio.wait_for(calls.only().wait_closed(), 3.0) == "socket_closed"


async def test_agent_hang_up_closes_the_stream() -> None:
    calls = Calls()
    calls.agent = ScriptedAgent(lambda t: ["Goodbye.", HangUp("done")])
    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        async with dial(AcsFarEnd(), acs_url(base)) as call:
            reason = await asyncio.wait_for(call.wait_ended(), 3.0)
            assert reason not in ("hangup", "dropped"), "the server closed the socket first"
        assert await calls.only().wait_closed() == "agent_hangup: done"
    assert check_outbound(call, PCM16_16K)


async def test_malformed_messages_are_ignored_and_the_call_goes_on() -> None:
    calls = Calls()
    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        async with dial(AcsFarEnd(), acs_url(base)) as call:
            for bad in [
                "not json",
                '{"kind": "Bogus"}',
                '{"kind": "AudioData", "audioData": {"data": "!!notb64"}}',
                '{"kind": "DtmfData", "dtmfData": {"data": "x"}}',
                metadata(24000),
                b"\x00\x01binary",
            ]:
                await call.send(bad)
            await say_my_line(call)
            await until(lambda: bool(lines(calls.only(), Speaker.CALLER)))
            assert not calls.only().ended
        acs_call = calls.only()
        await acs_call.wait_closed()

    assert lines(acs_call, Speaker.CALLER) == ["my card is lost"]
    check_outbound(call, PCM16_16K)


@pytest.mark.parametrize("presented", [None, "wrong-token", "Basic YWNzLXRlc3QtdG9rZW4="])
async def test_a_stream_without_the_token_is_refused(presented: str | None) -> None:
    calls = Calls()
    headers = {} if presented is None else {"Authorization": presented}
    async with serving(app_with(lambda app: mount_acs(app, calls, token=TOKEN))) as base:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(acs_url(base), additional_headers=headers):
                pass
    assert refused.value.response.status_code == 403
    assert calls.made == {}


async def test_a_stream_with_the_token_is_served() -> None:
    calls = Calls()
    async with serving(app_with(lambda app: mount_acs(app, calls, token=TOKEN))) as base:
        async with dial(AcsFarEnd(token=TOKEN), acs_url(base)) as call:
            await call.silence(0.1)
            await until(lambda: len(calls.made) == 1)
        assert await calls.only().wait_closed() == "socket_closed"


async def test_unsupported_audio_is_refused_with_1003() -> None:
    calls = Calls()
    async with (
        serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base,
        connect(acs_url(base)) as ws,
    ):
        await ws.send(metadata(8000))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3.0)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert calls.made == {}


@pytest.mark.slow
async def test_two_concurrent_calls_stay_isolated() -> None:
    calls = Calls()

    async def run(base: str, who: str, speak_at: float, speak_for: float) -> DialSession:
        far = AcsFarEnd(subscription_id=f"sub-{who}")
        async with dial(far, acs_url(base, who)) as call:
            await call.silence(speak_at)
            await call.play(speech(speak_for), SPEECH_RATE)
            await until(lambda: len(getattr(calls.find(who), "history", ())) >= 3)
        return call

    async with serving(app_with(lambda app: mount_acs(app, calls, token=None))) as base:
        alice, bob = await asyncio.gather(
            run(base, "alice", SPEAK_AT, SPEAK_FOR), run(base, "bob", 0.4, 0.4)
        )
    for call in (alice, bob):
        check_outbound(call, PCM16_16K)
    a, b = calls.made["sub-alice"], calls.made["sub-bob"]
    assert calls.params == {"sub-alice": {"script": "alice"}, "sub-bob": {"script": "bob"}}
    assert lines(a, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    assert lines(b, Speaker.AGENT) == ["Hello.", "You said book an appointment."]
    assert lines(a, Speaker.CALLER) == ["my card is lost"]
    assert lines(b, Speaker.CALLER) == ["book an appointment"]
