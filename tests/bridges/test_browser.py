"""Contract tests for the browser channel (`WS /browser`, OpusAgent's own protocol).

The protocol is defined in `opusagent.bridges.browser` and `docs/browser-protocol.md`; the
expected field sets below are written out from that description, not taken from the code's
models, so a drift between the two fails here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from opusagent.app import create_app
from opusagent.audio.formats import PCM16_16K, AudioChunk, AudioFormat, Encoding
from opusagent.bridges.browser import BROWSER_PATH, BrowserTranslator, mount_browser
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farend import Clear, Ended, Heard, Play, PlayMarker, Ready
from opusagent.bridges.farends.browser import BrowserFarEnd
from opusagent.bridges.session import CloseSocket, Frame, Reply, StartCall, StreamRefusedError
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import (
    AgentAudio,
    AgentStatus,
    AgentText,
    CallerAudio,
    CallerHungUp,
    CallerSpeech,
    CallerTranscript,
    CallMedia,
    CallOutput,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    Mark,
    MarkAcknowledged,
    ReplyAudioEnd,
    ReplyLatency,
    SendDtmf,
    Transfer,
)
from opusagent.call.stages import ReplyPart, Speaker, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.testing import FakeTTS, FakeVAD, ScriptedAgent, ScriptedSTT, Utterance

PCM16_48K = AudioFormat(Encoding.PCM16, 48000)
OUTBOUND_KEYS = {
    "started": {"type", "callId", "sampleRate"},
    "mark": {"type", "name"},
    "clear": {"type", "generation"},
    "speech": {"type", "started"},
    "transcript": {"type", "text", "final", "confidence"},
    "agent_text": {"type", "generation", "text"},
    "state": {"type", "state", "detail"},
    "latency": {"type", "generation", "seconds"},
    "reply_end": {"type", "generation"},
    "transfer": {"type", "target", "reason"},
    "dtmf": {"type", "digits"},
    "hangup": {"type", "reason"},
    "error": {"type", "message"},
}


def start_frame(**fields: Any) -> str:
    return json.dumps({"type": "start", "sampleRate": 48000, **fields})


def started_translator(**fields: Any) -> BrowserTranslator:
    translator = BrowserTranslator()
    translator.inbound(start_frame(**fields))
    return translator


def error_of(meaning: object) -> str:
    """The message of the `error` a frame was answered with."""
    assert isinstance(meaning, Reply), meaning
    assert isinstance(meaning.frame, str)
    message = json.loads(meaning.frame)
    assert set(message) == OUTBOUND_KEYS["error"] and message["type"] == "error"
    assert isinstance(message["message"], str) and message["message"]
    return str(message["message"])


# --- the translator ------------------------------------------------------------------------


def test_start_starts_the_call_then_answers_started() -> None:
    translator = BrowserTranslator()
    meaning = translator.inbound(
        start_frame(callId="demo-1", agent="bank", params={"lang": "en", "agent": "other"})
    )
    assert isinstance(meaning, list) and len(meaning) == 2
    start, reply = meaning
    assert start == StartCall(
        "demo-1",
        CallMedia(inbound=PCM16_48K, outbound=PCM16_48K, marks=True),
        {"lang": "en", "agent": "bank"},
    )
    assert isinstance(reply, Reply) and isinstance(reply.frame, str)
    assert json.loads(reply.frame) == {"type": "started", "callId": "demo-1", "sampleRate": 48000}


def test_start_without_call_id_gets_a_fresh_one() -> None:
    ids = []
    for _ in range(2):
        meaning = BrowserTranslator().inbound(json.dumps({"type": "start", "sampleRate": 16000}))
        assert isinstance(meaning, list)
        start, reply = meaning
        assert isinstance(start, StartCall) and isinstance(reply, Reply)
        assert start.media.inbound == start.media.outbound == PCM16_16K
        assert start.params == {}
        assert isinstance(reply.frame, str)
        assert json.loads(reply.frame)["callId"] == start.call_id
        ids.append(start.call_id)
    assert ids[0] != ids[1]
    assert all(re.fullmatch(r"browser-[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 44100, 48000])
def test_supported_rates_are_negotiated_both_ways(rate: int) -> None:
    meaning = BrowserTranslator().inbound(json.dumps({"type": "start", "sampleRate": rate}))
    assert isinstance(meaning, list) and isinstance(meaning[0], StartCall)
    fmt = AudioFormat(Encoding.PCM16, rate)
    assert meaning[0].media == CallMedia(inbound=fmt, outbound=fmt, marks=True, frame_ms=20)


@pytest.mark.parametrize("rate", [22050, 0, 96000])
def test_unsupported_rate_is_refused_with_an_error(rate: int) -> None:
    with pytest.raises(StreamRefusedError) as refused:
        BrowserTranslator().inbound(start_frame(sampleRate=rate))
    assert refused.value.reply is not None
    assert str(rate) in error_of(Reply(refused.value.reply))


def test_audio_dtmf_marks_and_hangup_become_call_events() -> None:
    translator = started_translator()
    audio = np.arange(-480, 480, dtype="<i2").tobytes()
    assert translator.inbound(audio) == CallerAudio(AudioChunk(audio, PCM16_48K))
    assert translator.inbound(b"") is None
    assert translator.inbound('{"type":"dtmf","digit":"b"}') == DtmfReceived("B")
    assert translator.inbound('{"type":"mark","name":"c:1:2"}') == MarkAcknowledged("c:1:2")
    assert translator.inbound('{"type":"hangup"}') == CallerHungUp("hangup")


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"no": "type"}', "unknown type None"),
        ('{"type": "media"}', "unknown type 'media'"),
        ('{"type": "dtmf"}', "digit"),
        ('{"type": "dtmf", "digit": "x"}', "digit"),
        ('{"type": "dtmf", "digit": 5}', "digit"),
        ('{"type": "mark", "name": ""}', "name"),
        ('{"type": "hangup", "reason": "bye"}', "reason"),
        (start_frame(), "already started"),
        (b"\x00\x01\x02", "3 bytes"),
    ],
)
def test_bad_messages_are_answered_with_error(frame: str | bytes, problem: str) -> None:
    assert problem in error_of(started_translator().inbound(frame))


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        ('{"type": "start"}', "sampleRate"),
        ('{"type": "start", "sampleRate": "48000"}', "sampleRate"),
        (start_frame(callId="has:colon"), "callId"),
        (start_frame(params={"n": 1}), "params.n"),
        (start_frame(samplerate=48000), "samplerate"),
        ('{"type": "dtmf", "digit": "1"}', "dtmf before start"),
        ('{"type": "mark", "name": "m"}', "mark before start"),
        ('{"type": "hangup"}', "hangup before start"),
        (b"\x00\x00", "audio before start"),
    ],
)
def test_bad_messages_before_start_are_answered_with_error(
    frame: str | bytes, problem: str
) -> None:
    translator = BrowserTranslator()
    assert problem in error_of(translator.inbound(frame))
    assert translator.call_id is None


def wire(output: CallOutput) -> dict[str, Any]:
    frame = started_translator().outbound(output)
    assert isinstance(frame, str)
    message: dict[str, Any] = json.loads(frame)
    assert set(message) == OUTBOUND_KEYS[message["type"]]
    return message


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (Mark("c:1:1"), {"type": "mark", "name": "c:1:1"}),
        (ClearPlayback(3), {"type": "clear", "generation": 3}),
        (CallerSpeech(True), {"type": "speech", "started": True}),
        (CallerSpeech(False), {"type": "speech", "started": False}),
        (
            CallerTranscript("my card", final=False),
            {"type": "transcript", "text": "my card", "final": False, "confidence": None},
        ),
        (
            CallerTranscript("my card is lost", final=True, confidence=0.9),
            {"type": "transcript", "text": "my card is lost", "final": True, "confidence": 0.9},
        ),
        (AgentText(2, "Hello."), {"type": "agent_text", "generation": 2, "text": "Hello."}),
        (
            AgentStatus("verify", {"slots": {"card": "lost"}, "tries": 1}),
            {"type": "state", "state": "verify", "detail": {"slots": {"card": "lost"}, "tries": 1}},
        ),
        (AgentStatus("idle"), {"type": "state", "state": "idle", "detail": {}}),
        (ReplyLatency(2, 0.25), {"type": "latency", "generation": 2, "seconds": 0.25}),
        (ReplyAudioEnd(2), {"type": "reply_end", "generation": 2}),
        (
            Transfer("+15550123", "asked for a person"),
            {"type": "transfer", "target": "+15550123", "reason": "asked for a person"},
        ),
        (Transfer("sales"), {"type": "transfer", "target": "sales", "reason": ""}),
        (SendDtmf("12#"), {"type": "dtmf", "digits": "12#"}),
    ],
)
def test_outputs_become_messages_field_by_field(
    output: CallOutput, message: dict[str, Any]
) -> None:
    assert wire(output) == message


def test_status_detail_that_json_cannot_hold_is_sent_as_text() -> None:
    assert wire(AgentStatus("s", {"when": object})) == {
        "type": "state",
        "state": "s",
        "detail": {"when": str(object)},
    }


def test_agent_audio_goes_out_as_binary_at_the_negotiated_rate() -> None:
    translator = started_translator()
    frame = bytes(1920)  # 20 ms at 48 kHz
    assert translator.outbound(AgentAudio(AudioChunk(frame, PCM16_48K), 1)) == frame
    with pytest.raises(ValueError, match="plays"):
        translator.outbound(AgentAudio(AudioChunk(bytes(640), PCM16_16K), 1))


def test_agent_hang_up_sends_hangup_then_closes() -> None:
    result = started_translator().outbound(HangUp("done"))
    assert isinstance(result, list) and len(result) == 2
    message, close = result
    assert isinstance(message, str)
    assert json.loads(message) == {"type": "hangup", "reason": "done"}
    assert isinstance(close, CloseSocket)


# --- the far end ---------------------------------------------------------------------------


def test_far_end_opens_with_start_and_speaks_the_page_side() -> None:
    far = BrowserFarEnd(16000, call_id="demo-1", agent="bank", params={"lang": "en"})
    assert far.audio_format == PCM16_16K and far.frame_ms == 20 and far.waits_for_ready
    assert far.headers() == {}
    [opening] = far.opening()
    assert isinstance(opening, str)
    assert json.loads(opening) == {
        "type": "start",
        "sampleRate": 16000,
        "callId": "demo-1",
        "agent": "bank",
        "params": {"lang": "en"},
    }
    assert far.audio(b"\x01\x02") == b"\x01\x02"
    assert [json.loads(f) for f in far.dtmf("5")] == [{"type": "dtmf", "digit": "5"}]
    assert [json.loads(f) for f in far.hangup()] == [{"type": "hangup"}]
    marker = far.marker_played("c:1:2")
    assert isinstance(marker, str)
    assert json.loads(marker) == {"type": "mark", "name": "c:1:2"}


def test_far_end_opening_is_accepted_by_the_translator() -> None:
    far = BrowserFarEnd(24000)
    translator = BrowserTranslator()
    [opening] = far.opening()
    meaning = translator.inbound(opening)
    assert isinstance(meaning, list) and isinstance(meaning[0], StartCall)
    for frame in [*far.dtmf("#"), far.marker_played("m"), *far.hangup()]:
        assert frame is not None
        assert not isinstance(translator.inbound(frame), Reply)


def test_far_end_reacts_to_every_server_message() -> None:
    far = BrowserFarEnd(48000)
    translator = started_translator()
    react = far.receive
    assert react('{"type":"started","callId":"c","sampleRate":48000}') == [Ready()]
    assert far.call_id == "c"
    assert react(b"\x00\x00") == [Play(b"\x00\x00")]
    outputs: list[tuple[CallOutput, list[object]]] = [
        (Mark("c:1:1"), [PlayMarker("c:1:1")]),
        (ClearPlayback(3), [Clear(), Heard("clear", "", {"generation": 3})]),
        (CallerSpeech(True), [Heard("speech", "started")]),
        (CallerSpeech(False), [Heard("speech", "stopped")]),
        (
            CallerTranscript("hi", final=True, confidence=0.5),
            [Heard("transcript", "hi", {"final": True, "confidence": 0.5})],
        ),
        (AgentText(2, "Hello."), [Heard("agent_text", "Hello.", {"generation": 2})]),
        (AgentStatus("menu", {"n": 1}), [Heard("state", "menu", {"n": 1})]),
        (
            ReplyLatency(2, 0.25),
            [Heard("latency", "0.250", {"generation": 2, "seconds": 0.25})],
        ),
        (ReplyAudioEnd(2), [Heard("reply_end", "", {"generation": 2})]),
        (Transfer("sales", "why"), [Heard("transfer", "sales", {"reason": "why"})]),
        (SendDtmf("12"), [Heard("dtmf", "12")]),
    ]
    for output, reactions in outputs:
        frame = translator.outbound(output)
        assert isinstance(frame, str)
        assert react(frame) == reactions, output
    hangup = translator.outbound(HangUp("done"))
    assert isinstance(hangup, list) and isinstance(hangup[0], str)
    assert react(hangup[0]) == [Heard("hangup", "done"), Ended("done")]
    assert react('{"type":"error","message":"bad"}') == [Heard("error", "bad")]


@pytest.mark.parametrize(
    "frame",
    [
        '{"type":"started","callId":"c","sampleRate":16000}',
        '{"type":"mark","name":"m","extra":1}',
        '{"type":"bogus"}',
        "not json",
    ],
)
def test_far_end_reports_what_the_protocol_does_not_say(frame: str) -> None:
    far = BrowserFarEnd(48000)
    [heard] = far.receive(frame)
    assert isinstance(heard, Heard) and heard.kind == "error"
    assert heard.text.startswith("the server sent an invalid message")
    assert heard.detail == {"frame": frame}
    assert far.call_id is None


def test_far_end_for_a_url_is_a_48_khz_page_without_credentials() -> None:
    assert BrowserFarEnd.for_url("ws://localhost:8000/browser").audio_format == PCM16_48K
    with pytest.raises(ValueError, match="no authentication"):
        BrowserFarEnd.for_url("ws://localhost:8000/browser", token="secret")


# --- whole calls over a real server on loopback --------------------------------------------

FRAME_S = 0.02
SECONDS_PER_WORD = 0.05
POLICY = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0)
SCRIPTS = {
    "card": [Utterance(0.1, 0.5, "my card is lost")],
    "appointment": [Utterance(0.1, 0.5, "book an appointment")],
    "barge": [Utterance(0.4, 0.9, "stop please")],
    "": [],
}
LONG_GREETING = " ".join(f"Sentence {n} of ours." for n in range(1, 11))  # 10 x 0.2 s


def echo(turn: UserTurn) -> Sequence[ReplyPart]:
    if turn.kind is TurnKind.START:
        return [AgentStatus("greeting"), "Hello."]
    said = turn.text or turn.dtmf
    return [AgentStatus("answer", {"heard": said}), f"You said {said}."]


@dataclass
class Calls:
    """A CallFactory from fake stages; the caller's words come from the `script` parameter."""

    agent: ScriptedAgent = field(default_factory=lambda: ScriptedAgent(echo))
    made: dict[str, Call] = field(default_factory=dict)
    params: dict[str, Mapping[str, str]] = field(default_factory=dict)

    def __call__(
        self, call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
    ) -> Call:
        stt = ScriptedSTT(SCRIPTS[params.get("script", "")])
        tts = FakeTTS(seconds_per_word=SECONDS_PER_WORD, chunk_s=0.2)
        call = Call(call_id, media, Stages(FakeVAD(), stt, self.agent, tts), send, policy=POLICY)
        self.made[call_id] = call
        self.params[call_id] = params
        return call


@contextlib.asynccontextmanager
async def serving(calls: Calls) -> AsyncIterator[str]:
    """Serve `/browser` with uvicorn on a free loopback port; yields its ws:// URL."""
    app: FastAPI = create_app(Settings(), loaders={}, bridges=False)
    mount_browser(app, calls)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}{BROWSER_PATH}"
    finally:
        server.should_exit = True
        await task
        sock.close()


class Page(BrowserFarEnd):
    """A page that also counts the microphone audio it sends."""

    def __init__(self, sample_rate: int, **kwargs: Any) -> None:
        super().__init__(sample_rate, **kwargs)
        self.sent_s = 0.0

    def audio(self, data: bytes) -> Frame:
        self.sent_s += self.audio_format.duration(data)
        return super().audio(data)


def speech(seconds: float, rate: int) -> np.ndarray[Any, np.dtype[np.int16]]:
    return np.random.default_rng(7).integers(-8000, 8000, round(seconds * rate), dtype=np.int16)


def messages(call: DialSession) -> list[dict[str, Any]]:
    return [json.loads(frame) for _, frame in call.received if isinstance(frame, str)]


def of(call: DialSession, kind: str) -> list[dict[str, Any]]:
    return [m for m in messages(call) if m["type"] == kind]


def agent_audio(call: DialSession) -> list[bytes]:
    return [frame for _, frame in call.received if isinstance(frame, bytes)]


def check_outbound(call: DialSession, rate: int) -> None:
    """`started` first; every message with exactly its fields; audio in exact 20 ms frames."""
    first = call.received[0][1]
    assert isinstance(first, str) and json.loads(first)["type"] == "started"
    for message in messages(call):
        assert set(message) == OUTBOUND_KEYS[message["type"]], message
    assert {len(frame) for frame in agent_audio(call)} == {round(rate * FRAME_S) * 2}


def lines(call: Call, speaker: Speaker) -> list[str]:
    return [entry.text for entry in call.history if entry.speaker is speaker]


def page_call(calls: Calls, call: DialSession) -> Call:
    assert isinstance(call.far_end, BrowserFarEnd) and call.far_end.call_id is not None
    return calls.made[call.far_end.call_id]


async def until(done: Callable[[], bool], within: float = 5.0) -> None:
    for _ in range(round(within / FRAME_S)):
        if done():
            return
        await asyncio.sleep(FRAME_S)
    raise AssertionError(f"not done within {within} s")


def replied(call: DialSession, text: str) -> bool:
    """The reply that says `text` has been sent to its end."""
    generations = {m["generation"] for m in of(call, "agent_text") if m["text"] == text}
    return any(m["generation"] in generations for m in of(call, "reply_end"))


async def talk(call: DialSession, rate: int, answer: str = "You said my card is lost.") -> None:
    """From the start of the call: 0.1 s of silence and 0.4 s of speech (the scripts' timing),
    then wait until the agent's `answer` has played."""
    await call.silence(0.1)
    await call.play(speech(0.4, rate), rate)
    await until(lambda: replied(call, answer))
    assert await call.wait_until_quiet(0.1, 3.0)


@pytest.mark.parametrize("rate", [48000, 16000])
async def test_whole_call_keeps_durations_both_ways(rate: int) -> None:
    calls = Calls()
    page = Page(rate, agent="bank", params={"script": "card"})
    async with serving(calls) as url, dial(page, url) as call:
        await talk(call, rate)
        assert page.call_id is not None
        server_call = calls.made[page.call_id]
        await call.hangup()
        assert await asyncio.wait_for(server_call.wait_closed(), 3.0) == "hangup"

    check_outbound(call, rate)
    assert of(call, "started") == [{"type": "started", "callId": page.call_id, "sampleRate": rate}]
    assert calls.params[page.call_id] == {"script": "card", "agent": "bank"}
    assert lines(server_call, Speaker.CALLER) == ["my card is lost"]
    assert lines(server_call, Speaker.AGENT) == ["Hello.", "You said my card is lost."]
    # Microphone audio in = audio heard by the 16 kHz listener (less the resampler's delay).
    assert page.sent_s > 0.5
    assert abs(server_call.quality().seconds - page.sent_s) <= 0.005
    # "Hello." and the 6-word answer, in whole 20 ms frames.
    sent_back = sum(len(frame) for frame in agent_audio(call)) / 2 / rate
    assert abs(sent_back - 7 * SECONDS_PER_WORD) <= 2 * FRAME_S


async def test_events_arrive_in_order() -> None:
    calls = Calls()
    async with serving(calls) as url, dial(Page(16000, params={"script": "card"}), url) as call:
        await talk(call, 16000)
        await call.hangup()

    events = [m["type"] for m in messages(call) if m["type"] not in ("mark",)]
    greeting = ["started", "state", "agent_text", "latency", "reply_end"]
    assert events[: len(greeting)] == greeting
    answer = events[len(greeting) :]
    assert answer[0] == "speech" and answer[-4:] == ["state", "agent_text", "latency", "reply_end"]
    transcripts = of(call, "transcript")
    assert [t["final"] for t in transcripts][-1] is True
    assert not any(t["final"] for t in transcripts[:-1])
    assert transcripts[-1]["text"] == "my card is lost"
    assert [m["started"] for m in of(call, "speech")] == [True, False]
    assert answer.index("speech", 1) < answer.index("agent_text")
    assert of(call, "state") == [
        {"type": "state", "state": "greeting", "detail": {}},
        {"type": "state", "state": "answer", "detail": {"heard": "my card is lost"}},
    ]
    assert [(m["generation"], m["text"]) for m in of(call, "agent_text")] == [
        (1, "Hello."),
        (2, "You said my card is lost."),
    ]
    latencies = of(call, "latency")
    assert [m["generation"] for m in latencies] == [1, 2]
    assert all(0 <= m["seconds"] < 1.0 for m in latencies)
    assert [m["generation"] for m in of(call, "reply_end")] == [1, 2]
    check_outbound(call, 16000)


class DeafPage(BrowserFarEnd):
    """A page that never echoes marks."""

    def marker_played(self, token: str) -> Frame | None:
        return None


@pytest.mark.parametrize("echoes", [True, False])
async def test_barge_in_clears_and_echoed_marks_tell_what_was_heard(echoes: bool) -> None:
    calls = Calls(
        agent=ScriptedAgent(lambda t: LONG_GREETING if t.kind is TurnKind.START else echo(t))
    )
    page = (BrowserFarEnd if echoes else DeafPage)(16000, params={"script": "barge"})
    async with serving(calls) as url, dial(page, url) as call:
        await call.silence(0.4)
        await call.play(speech(0.5, 16000), 16000)
        await until(lambda: replied(call, "You said stop please."))
        assert await call.wait_until_quiet(0.2, 3.0)
        assert page.call_id is not None
        server_call = calls.made[page.call_id]

    check_outbound(call, 16000)
    assert of(call, "clear") == [{"type": "clear", "generation": 1}]
    greeting, reply = server_call.history[0], server_call.history[-1]
    assert greeting.interrupted and greeting.generated == LONG_GREETING
    assert (reply.speaker, reply.text) == (Speaker.AGENT, "You said stop please.")
    start, end = call.result().agent_spans[0]
    played_s = end - start  # the greeting, as the page played it until `clear`
    assert 0.4 < played_s < 1.2
    if echoes:  # the words heard follow the page's playback
        assert LONG_GREETING.startswith(greeting.text)
        assert abs(len(greeting.text.split()) * SECONDS_PER_WORD - played_s) <= 0.15
    else:  # without echoes the server cannot confirm past the first sentence
        assert "Sentence 1 of ours.".startswith(greeting.text)


async def test_dtmf_reaches_the_agent() -> None:
    calls = Calls()
    async with serving(calls) as url, dial(BrowserFarEnd(16000), url) as call:
        await until(lambda: replied(call, "Hello."))
        await call.dtmf("42#")
        await until(lambda: replied(call, "You said 42."))

    assert [t.dtmf for t in calls.agent.turns if t.kind is TurnKind.DTMF] == ["42"]
    check_outbound(call, 16000)


async def test_page_hangup_ends_the_call_and_the_server_closes() -> None:
    calls = Calls()
    async with serving(calls) as url, connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "sampleRate": 8000, "callId": "c-1"}))
        assert json.loads(await ws.recv()) == {
            "type": "started",
            "callId": "c-1",
            "sampleRate": 8000,
        }
        await ws.send(json.dumps({"type": "hangup"}))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 3.0)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000
        assert await asyncio.wait_for(calls.made["c-1"].wait_closed(), 3.0) == "hangup"


async def test_agent_hangup_sends_hangup_after_its_audio_then_closes() -> None:
    calls = Calls(agent=ScriptedAgent(lambda t: ["Goodbye.", HangUp("done")]))
    async with serving(calls) as url, dial(BrowserFarEnd(24000), url) as call:
        await until(lambda: call.ended)
        assert page_call(calls, call).end_reason == "agent_hangup: done"

    assert call.end_reason == "done"
    check_outbound(call, 24000)
    kinds = ["audio" if isinstance(f, bytes) else json.loads(f)["type"] for _, f in call.received]
    assert kinds[-1] == "hangup" and of(call, "hangup") == [{"type": "hangup", "reason": "done"}]
    goodbye_s = sum(len(frame) for frame in agent_audio(call)) / 2 / 24000
    assert abs(goodbye_s - SECONDS_PER_WORD) < FRAME_S  # all of "Goodbye." came first


class CarelessPage(Page):
    """A page that sends bad messages around its `start`."""

    BAD: ClassVar[list[tuple[Frame, str]]] = [
        ("not json", "not JSON"),
        ('{"type": "bogus"}', "unknown type 'bogus'"),
        ('{"type": "dtmf", "digit": "x"}', "dtmf: digit"),
        ('{"type": "mark"}', "mark: name: Field required"),
        (b"\x00\x01\x02", "audio of 3 bytes"),
        (json.dumps({"type": "start", "sampleRate": 16000}), "has already started"),
    ]

    def opening(self) -> list[Frame]:
        before = '{"type": "dtmf", "digit": "1"}'
        return [before, *super().opening(), *(frame for frame, _ in self.BAD)]


async def test_bad_messages_are_answered_with_error_and_the_call_goes_on() -> None:
    calls = Calls()
    page = CarelessPage(16000, params={"script": "card"})
    async with serving(calls) as url, dial(page, url) as call:
        await talk(call, 16000)
        server_call = page_call(calls, call)
        assert not server_call.ended

    errors = [m["message"] for m in of(call, "error")]
    expected = ["dtmf before start", *(problem for _, problem in CarelessPage.BAD)]
    assert len(errors) == len(expected)
    for error, problem in zip(errors, expected, strict=True):
        assert problem in error
    assert lines(server_call, Speaker.CALLER) == ["my card is lost"]
    assert len(calls.made) == 1
    for message in messages(call):
        assert set(message) == OUTBOUND_KEYS[message["type"]], message


async def test_unsupported_rate_is_answered_with_error_then_refused() -> None:
    calls = Calls()
    async with serving(calls) as url, connect(url) as ws:
        await ws.send(json.dumps({"type": "start", "sampleRate": 22050}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 3.0)) == {
            "type": "error",
            "message": "sampleRate 22050 is not one of 8000, 16000, 24000, 44100, 48000",
        }
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 3.0)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003
    assert calls.made == {}


@pytest.mark.slow
async def test_two_concurrent_calls_stay_isolated() -> None:
    calls = Calls()

    async def run(url: str, rate: int, script: str, answer: str) -> DialSession:
        async with dial(BrowserFarEnd(rate, params={"script": script}), url) as call:
            await talk(call, rate, answer)
        return call

    async with serving(calls) as url:
        card, appointment = await asyncio.gather(
            run(url, 48000, "card", "You said my card is lost."),
            run(url, 16000, "appointment", "You said book an appointment."),
        )

    for call, rate, said in [
        (card, 48000, "my card is lost"),
        (appointment, 16000, "book an appointment"),
    ]:
        check_outbound(call, rate)
        server_call = page_call(calls, call)
        call_id = server_call.call_id
        assert lines(server_call, Speaker.CALLER) == [said]
        assert lines(server_call, Speaker.AGENT) == ["Hello.", f"You said {said}."]
        assert {m["text"] for m in of(call, "transcript")} <= {
            " ".join(said.split()[:n]) for n in range(1, 5)
        }
        assert [m["text"] for m in of(call, "agent_text")] == ["Hello.", f"You said {said}."]
        assert of(call, "mark") and all(
            m["name"].startswith(f"{call_id}:") for m in of(call, "mark")
        )
    assert page_call(calls, card).call_id != page_call(calls, appointment).call_id
