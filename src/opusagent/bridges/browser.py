"""The browser channel (`WS /browser`): OpusAgent's own protocol for a web page that talks to an
agent through its microphone and speakers and shows what happens on the call.

No provider defines this protocol; `docs/browser-protocol.md` describes it for page authors, and
this docstring is its reference. There is no authentication on `/browser` yet: it is meant for
local development (put it behind an authenticating proxy before exposing it).

Frames: text frames are JSON objects with a `type`; binary frames are raw PCM16 little-endian
mono audio, with no header.

Page -> server:

- `{"type":"start","sampleRate":48000,"callId":"…","agent":"…","params":{"k":"v"}}` first.
  `sampleRate` (required) is the rate of the microphone audio: 8000, 16000, 24000, 44100 or 48000
  (browsers run an AudioContext at the sound device's rate, 48000 or 44100). `callId` (optional,
  1-64 of `A-Z a-z 0-9 _ . -`) names the call; the server makes one when it is missing. `agent`
  (optional) names the agent to talk to; it is passed to the call as the parameter `agent` (over
  any `agent` in `params`). `params` (optional) is a map of strings handed to the call. An
  unsupported `sampleRate` is answered with `error` and the socket is closed with code 1003.
- binary frames: microphone audio at `sampleRate`, any whole number of samples per frame (20 ms
  is not required: the server resamples one continuous stream).
- `{"type":"dtmf","digit":"5"}`: one key, `0-9 * # A-D`.
- `{"type":"mark","name":"…"}`: echo of a server `mark` once all audio received before it has
  played, or at once when a `clear` drops it.
- `{"type":"hangup"}`: the caller hangs up; the server ends the call and closes the socket (1000).

Server -> page:

- `{"type":"started","callId":"…","sampleRate":48000}`: the answer to `start`, once the call
  exists; nothing of the call comes before it.
  Agent audio comes at the microphone's rate, so a page plays it in the AudioContext that records
  the microphone with no resampling of its own: each direction is resampled once, on the server,
  by its one streaming resampler.
- binary frames: agent audio, PCM16 at the `started` rate, exactly 20 ms each, paced in real time
  (about 60 ms ahead of playback).
- `{"type":"mark","name":"…"}`: echo it when the audio before it has played; the echoes tell the
  server what the caller really heard of a reply that gets cut off.
- `{"type":"clear","generation":3}`: drop all buffered agent audio now (the caller barged in on
  reply `generation`) and echo every pending mark.
- `{"type":"speech","started":true}`: the server heard the caller start (false: stop) speaking.
- `{"type":"transcript","text":"…","final":false,"confidence":null}`: what the caller said so
  far (partials change; a final does not). `confidence` is 0-1, or null when the STT gives none.
- `{"type":"agent_text","generation":2,"text":"…"}`: words of reply `generation`, as they are
  synthesised (just before their audio).
- `{"type":"state","state":"…","detail":{…}}`: where the agent is (e.g. its state and slots).
- `{"type":"latency","generation":2,"seconds":0.42}`: the first audio of reply `generation` went
  out this long after the caller's input ended.
- `{"type":"reply_end","generation":2}`: no more audio follows for reply `generation` (it ran to
  its end; a reply cut off by the caller gets none).
- `{"type":"transfer","target":"…","reason":"…"}` and `{"type":"dtmf","digits":"…"}`: the agent
  transferred the call or sent digits; a page has no phone line, so it only shows them.
- `{"type":"hangup","reason":"…"}`: the agent hung up; the socket then closes (1000). Audio
  already received may still be played out.
- `{"type":"error","message":"…"}`: a message the server could not take (not JSON, an unknown
  `type`, a bad field, audio or a message before `start`, a second `start`, an odd byte count).
  The message is dropped and the call goes on.
"""

from __future__ import annotations

import logging
import uuid
from typing import Annotated, Any, Literal

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic_core import to_jsonable_python

from opusagent.audio.formats import AudioChunk, AudioFormat, Encoding
from opusagent.bridges.json_frames import parse_event
from opusagent.bridges.session import (
    CallFactory,
    CloseSocket,
    Frame,
    Inbound,
    InvalidMessageError,
    Outbound,
    Reply,
    StartCall,
    StreamRefusedError,
    run_session,
)
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
    StageFailed,
    Transfer,
)

log = logging.getLogger(__name__)

BROWSER_PATH = "/browser"
SAMPLE_RATES = (8000, 16000, 24000, 44100, 48000)
"""Microphone rates a page may send; agent audio comes back at the same rate."""
AGENT_PARAM = "agent"
"""The call parameter that names the agent (as the Twilio webhook's `agent` query parameter)."""
CALL_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
"""No `:`, which separates the parts of mark names."""

# --- messages page -> server ---------------------------------------------------------------
# Strict: our own page sends them, so a wrong type or an unknown field is a bug worth an `error`.


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class StartMessage(_Inbound):
    type: Literal["start"]
    sample_rate: int = Field(alias="sampleRate")
    call_id: str | None = Field(None, alias="callId", pattern=CALL_ID_PATTERN)
    agent: str | None = Field(None, min_length=1, max_length=200)
    params: dict[str, str] = Field(default_factory=dict)


class DtmfMessage(_Inbound):
    type: Literal["dtmf"]
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")


class MarkMessage(_Inbound):
    type: Literal["mark"]
    name: str = Field(min_length=1, max_length=200)


class HangupMessage(_Inbound):
    type: Literal["hangup"]


PageMessage = Annotated[
    StartMessage | DtmfMessage | MarkMessage | HangupMessage, Field(discriminator="type")
]
_PAGE_MESSAGE: TypeAdapter[PageMessage] = TypeAdapter(PageMessage)
PAGE_TYPES = frozenset({"start", "dtmf", "mark", "hangup"})

# --- messages server -> page ---------------------------------------------------------------


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def wire(self) -> str:
        return self.model_dump_json(by_alias=True)


class Started(_Outbound):
    type: Literal["started"] = "started"
    call_id: str = Field(alias="callId")
    sample_rate: int = Field(alias="sampleRate")


class MarkOut(_Outbound):
    type: Literal["mark"] = "mark"
    name: str


class ClearOut(_Outbound):
    type: Literal["clear"] = "clear"
    generation: int


class SpeechOut(_Outbound):
    type: Literal["speech"] = "speech"
    started: bool


class TranscriptOut(_Outbound):
    type: Literal["transcript"] = "transcript"
    text: str
    final: bool
    confidence: float | None


class AgentTextOut(_Outbound):
    type: Literal["agent_text"] = "agent_text"
    generation: int
    text: str


class StateOut(_Outbound):
    type: Literal["state"] = "state"
    state: str
    detail: dict[str, Any]


class LatencyOut(_Outbound):
    type: Literal["latency"] = "latency"
    generation: int
    seconds: float


class ReplyEndOut(_Outbound):
    type: Literal["reply_end"] = "reply_end"
    generation: int


class TransferOut(_Outbound):
    type: Literal["transfer"] = "transfer"
    target: str
    reason: str


class DtmfOut(_Outbound):
    type: Literal["dtmf"] = "dtmf"
    digits: str


class HangupOut(_Outbound):
    type: Literal["hangup"] = "hangup"
    reason: str


class ErrorOut(_Outbound):
    type: Literal["error"] = "error"
    message: str


ServerMessage = Annotated[
    Started
    | MarkOut
    | ClearOut
    | SpeechOut
    | TranscriptOut
    | AgentTextOut
    | StateOut
    | LatencyOut
    | ReplyEndOut
    | TransferOut
    | DtmfOut
    | HangupOut
    | ErrorOut,
    Field(discriminator="type"),
]
SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
"""Parses what the server sends (for the far end and the tests)."""


class BrowserTranslator:
    """Browser channel messages to `CallEvent`s and `CallOutput`s to messages, for one page."""

    def __init__(self) -> None:
        self._call_id: str | None = None
        self._format: AudioFormat | None = None

    @property
    def call_id(self) -> str | None:
        return self._call_id

    def inbound(self, frame: Frame) -> Inbound | list[Inbound] | None:
        try:
            return self._inbound(frame)
        except InvalidMessageError as exc:
            log.warning("browser call %s: rejected a message: %s", self._call_id or "-", exc)
            return Reply(ErrorOut(message=str(exc)).wire())

    def _inbound(self, frame: Frame) -> Inbound | list[Inbound] | None:
        if isinstance(frame, bytes):
            return self._audio(frame)
        message = _parse(frame)
        if isinstance(message, StartMessage):
            return self._start(message)
        if self._call_id is None:
            raise InvalidMessageError(f"{message.type} before start")
        match message:
            case DtmfMessage(digit=digit):
                return DtmfReceived(digit.upper())
            case MarkMessage(name=name):
                return MarkAcknowledged(name)
            case _:
                return CallerHungUp("hangup")

    def _audio(self, data: bytes) -> CallerAudio | None:
        if self._format is None:
            raise InvalidMessageError("audio before start")
        if len(data) % 2:
            raise InvalidMessageError(f"audio of {len(data)} bytes is not whole PCM16 samples")
        return CallerAudio(AudioChunk(data, self._format)) if data else None

    def _start(self, message: StartMessage) -> list[Inbound]:
        if self._call_id is not None:
            raise InvalidMessageError(f"call {self._call_id} has already started")
        rate = message.sample_rate
        if rate not in SAMPLE_RATES:
            problem = f"sampleRate {rate} is not one of {', '.join(map(str, SAMPLE_RATES))}"
            raise StreamRefusedError(problem, reply=ErrorOut(message=problem).wire())
        self._call_id = message.call_id or f"browser-{uuid.uuid4().hex}"
        self._format = AudioFormat(Encoding.PCM16, rate)
        params = dict(message.params)
        if message.agent is not None:
            params[AGENT_PARAM] = message.agent
        media = CallMedia(inbound=self._format, outbound=self._format, marks=True)
        started = Started(call_id=self._call_id, sample_rate=rate).wire()
        # The call starts before `started` goes out, so `started` is the first message sent.
        return [StartCall(self._call_id, media, params), Reply(started)]

    def outbound(self, output: CallOutput) -> Outbound | list[Outbound] | None:
        match output:
            case AgentAudio(chunk=chunk):
                if chunk.format != self._format:
                    raise ValueError(f"the page plays {self._format}, got {chunk.format}")
                return chunk.data
            case Mark(name=name):
                return MarkOut(name=name).wire()
            case ClearPlayback(generation=generation):
                return ClearOut(generation=generation).wire()
            case HangUp(reason=reason):
                return [HangupOut(reason=reason).wire(), CloseSocket(f"hang up: {reason}")]
            case Transfer(target=target, reason=reason):
                return TransferOut(target=target, reason=reason).wire()
            case SendDtmf(digits=digits):
                return DtmfOut(digits=digits).wire()
            case CallerSpeech(started=started):
                return SpeechOut(started=started).wire()
            case CallerTranscript(text=text, final=final, confidence=confidence):
                return TranscriptOut(text=text, final=final, confidence=confidence).wire()
            case AgentText(generation=generation, text=text):
                return AgentTextOut(generation=generation, text=text).wire()
            case AgentStatus(state=state, detail=detail):
                # An agent's status detail may hold values JSON has no type for: sent as text.
                jsonable = to_jsonable_python(dict(detail), fallback=str)
                return StateOut(state=state, detail=jsonable).wire()
            case ReplyLatency(generation=generation, seconds=seconds):
                return LatencyOut(generation=generation, seconds=seconds).wire()
            case ReplyAudioEnd(generation=generation):
                return ReplyEndOut(generation=generation).wire()
            case StageFailed():
                return None  # the page hears the fallback line; logs and metrics tell the rest


def _parse(text: str) -> PageMessage:
    return parse_event(text, _PAGE_MESSAGE, PAGE_TYPES, key="type")


def mount_browser(app: FastAPI, calls: CallFactory) -> None:
    """Serve `WS /browser` on `app`; `calls` builds the Call of each page's connection."""

    @app.websocket(BROWSER_PATH)
    async def browser(websocket: WebSocket) -> None:
        await websocket.accept()
        reason = await run_session(websocket, BrowserTranslator(), calls)
        log.info("browser connection closed; call end reason: %s", reason)
