"""Telnyx Call Control media streaming (bidirectional, RTP mode): messages, translation and route.

Protocol facts:

- frames: https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket
  (AsyncAPI)
- streaming options: https://developers.telnyx.com/api-reference/call-commands/streaming-start

Telnyx opens `WS /telnyx` (the `stream_url`) and sends JSON text frames with an `event`:
`connected`, `start` (call ids, `custom_parameters`, the `media_format` of the streamed audio),
`media` (base64 RTP payload without headers), `dtmf`, `mark`, `error` and `stop`. With
`stream_bidirectional_mode=rtp` we send `media` (20 ms to 30 s of raw codec payload per frame),
`mark` (Telnyx sends the same mark back once the media before it has played, at once when
nothing is queued, and returns queued marks on `clear`) and `clear` (stop playback, drop the
queue).

The audio format is the `media_format` of `start`: PCMU or PCMA at 8 kHz, or L16 (big-endian,
network byte order) at the stream's rate. Telnyx does not announce the format it expects back,
so this bridge answers in the same format: the Call Control request must set
`stream_bidirectional_codec` and `stream_bidirectional_sampling_rate` to match `stream_codec`.

Media frame order is not guaranteed (Telnyx says to order by `media.chunk`, `timestamp` and
`sequence_number`), so caller audio is put back in `chunk` order here, holding a few frames at
most when one is missing.

`stream_auth_token` arrives as the `x-telnyx-streaming-auth-token` header of the upgrade (and
in `connected`); `Authorization: Bearer <token>` (e.g. from a gateway) is accepted too. Hanging
up, transferring and sending digits are Call Control REST commands, out of this socket's reach.
"""

from __future__ import annotations

import base64
import logging
from typing import Annotated, Literal

import numpy as np
from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from opusagent.audio.formats import ALAW_8K, MULAW_8K, AudioChunk, AudioFormat, Encoding
from opusagent.bridges.auth import admit
from opusagent.bridges.json_frames import base64_audio, parse_event
from opusagent.bridges.session import (
    CallFactory,
    CloseSocket,
    Frame,
    Inbound,
    InvalidMessageError,
    StartCall,
    StreamRefusedError,
    run_session,
)
from opusagent.call.events import (
    AgentAudio,
    CallerAudio,
    CallerHungUp,
    CallMedia,
    CallOutput,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    Mark,
    MarkAcknowledged,
    ProviderError,
    SendDtmf,
    Transfer,
)

log = logging.getLogger(__name__)

PATH = "/telnyx"
TOKEN_HEADER = "x-telnyx-streaming-auth-token"
L16_RATES = frozenset({8000, 16000, 22050, 24000, 48000})
"""`stream_bidirectional_sampling_rate` values."""
REORDER_WINDOW = 5
"""Frames that may arrive after a missing one before it is given up for lost (100 ms at 20 ms)."""

# --- messages Telnyx -> server -------------------------------------------------------------


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ConnectedMessage(_Inbound):
    """`{"event":"connected","version":"1.0.0"}`, first on the socket."""

    event: Literal["connected"]
    version: str | None = None


class MediaFormat(_Inbound):
    encoding: str
    """`PCMU`, `PCMA`, `G722`, `OPUS`, `AMR-WB`, `L16` (older docs: `audio/x-mulaw`)."""
    sample_rate: int
    channels: int = 1


class StartInfo(_Inbound):
    call_control_id: str = Field(min_length=1)
    call_session_id: str | None = None
    user_id: str | None = None
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    client_state: str | None = None
    custom_parameters: dict[str, str] = Field(default_factory=dict)
    media_format: MediaFormat


class StartMessage(_Inbound):
    event: Literal["start"]
    sequence_number: str | None = None
    stream_id: str | None = None
    start: StartInfo


class MediaInfo(_Inbound):
    track: str | None = None
    """`inbound` (the caller) or `outbound` (what the caller hears, with `both_tracks`)."""
    chunk: int | None = Field(None, ge=0)
    timestamp: str | None = None
    payload: str


class MediaMessage(_Inbound):
    event: Literal["media"]
    sequence_number: str | None = None
    stream_id: str | None = None
    media: MediaInfo


class DtmfInfo(_Inbound):
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")


class DtmfMessage(_Inbound):
    event: Literal["dtmf"]
    sequence_number: str | None = None
    stream_id: str | None = None
    occurred_at: str | None = None
    dtmf: DtmfInfo


class MarkInfo(_Inbound):
    name: str


class MarkMessage(_Inbound):
    """A mark we sent, back once the media before it played (or on `clear`)."""

    event: Literal["mark"]
    sequence_number: str | None = None
    stream_id: str | None = None
    mark: MarkInfo


class ErrorInfo(_Inbound):
    code: int | str | None = None
    """100002 unknown_error, 100003 malformed_frame, 100004 invalid_media, 100005
    rate_limit_reached."""
    title: str | None = None
    detail: str | None = None


class ErrorMessage(_Inbound):
    event: Literal["error"]
    sequence_number: str | None = None
    stream_id: str | None = None
    error: ErrorInfo = Field(default_factory=ErrorInfo)


class StopInfo(_Inbound):
    user_id: str | None = None
    call_control_id: str | None = None


class StopMessage(_Inbound):
    """Telnyx stopped streaming (the call ended or streaming was stopped)."""

    event: Literal["stop"]
    sequence_number: str | None = None
    stream_id: str | None = None
    stop: StopInfo = Field(default_factory=StopInfo)


InboundMessage = Annotated[
    ConnectedMessage
    | StartMessage
    | MediaMessage
    | DtmfMessage
    | MarkMessage
    | ErrorMessage
    | StopMessage,
    Field(discriminator="event"),
]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
INBOUND_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "error", "stop"})

# --- messages server -> Telnyx -------------------------------------------------------------


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def wire(self) -> str:
        return self.model_dump_json()


class OutboundMediaPayload(_Outbound):
    payload: str
    """Base64 of the raw codec payload (no RTP header)."""


class OutboundMedia(_Outbound):
    """`{"event":"media","media":{"payload":…}}`: queued for playback in order."""

    event: Literal["media"] = "media"
    media: OutboundMediaPayload


class OutboundMarkName(_Outbound):
    name: str


class OutboundMark(_Outbound):
    """`{"event":"mark","mark":{"name":…}}`: sent back once the media before it has played."""

    event: Literal["mark"] = "mark"
    mark: OutboundMarkName


class OutboundClear(_Outbound):
    """`{"event":"clear"}`: stop playback, drop queued media, return queued marks."""

    event: Literal["clear"] = "clear"


_ENCODINGS = {"PCMU": MULAW_8K, "AUDIO/X-MULAW": MULAW_8K, "PCMA": ALAW_8K, "AUDIO/X-ALAW": ALAW_8K}


def wire_format(media_format: MediaFormat) -> tuple[AudioFormat, bool]:
    """The call's audio format for a stream's `media_format`, and whether its samples are
    big-endian on the wire (L16); `StreamRefusedError` for one this bridge cannot speak."""
    encoding = media_format.encoding.upper()
    rate = media_format.sample_rate
    if media_format.channels == 1:
        fixed = _ENCODINGS.get(encoding)
        if fixed is not None and rate == fixed.sample_rate:
            return fixed, False
        if encoding == "L16" and rate in L16_RATES:
            return AudioFormat(Encoding.PCM16, rate), True
    raise StreamRefusedError(
        f"media format {media_format.encoding}/{rate} Hz/{media_format.channels} ch is not "
        f"PCMU or PCMA at 8000 Hz or L16 at {sorted(L16_RATES)} Hz, mono"
    )


def swap16(data: bytes) -> bytes:
    """16-bit samples with their byte order reversed (big-endian L16 <-> PCM16LE)."""
    if len(data) % 2:
        raise ValueError(f"16-bit audio must have an even byte count, got {len(data)}")
    return np.frombuffer(data, dtype=np.uint16).byteswap().tobytes()


class ChunkOrder:
    """Puts media payloads back in `chunk` order.

    The first chunk to arrive sets where the count starts (Telnyx does not document it). A
    payload waits while an earlier chunk is missing, until `window` later ones have arrived; the
    missing chunk is then given up for lost. A chunk that arrives after its turn has passed
    (late, or a duplicate) is dropped.
    """

    def __init__(self, window: int = REORDER_WINDOW) -> None:
        self._window = window
        self._next: int | None = None
        self._held: dict[int, bytes] = {}

    def push(self, chunk: int, payload: bytes) -> list[bytes]:
        if self._next is None:
            self._next = chunk
        if chunk < self._next or chunk in self._held:
            log.debug("dropping media chunk %d: its turn has passed", chunk)
            return []
        self._held[chunk] = payload
        if len(self._held) > self._window:
            self._next = min(self._held)
        return self._release()

    def flush(self) -> list[bytes]:
        """Everything held, in order (the stream has ended)."""
        ready = [self._held[chunk] for chunk in sorted(self._held)]
        if self._held:
            self._next = max(self._held) + 1
        self._held.clear()
        return ready

    def _release(self) -> list[bytes]:
        ready: list[bytes] = []
        while self._next is not None and self._next in self._held:
            ready.append(self._held.pop(self._next))
            self._next += 1
        return ready


class TelnyxTranslator:
    """Telnyx media streaming messages to `CallEvent`s and `CallOutput`s to messages, for one
    stream."""

    def __init__(self) -> None:
        self._stream_id: str | None = None
        self._call_id: str | None = None
        self._format: AudioFormat | None = None
        self._big_endian = False
        self._order = ChunkOrder()

    def inbound(self, frame: Frame) -> Inbound | list[Inbound] | None:
        if isinstance(frame, bytes):
            raise InvalidMessageError("binary frame; Telnyx media streaming uses text frames")
        message = parse_event(frame, _INBOUND, INBOUND_EVENTS)
        if isinstance(message, ConnectedMessage):
            return None
        if isinstance(message, StartMessage):
            return self._on_start(message)
        fmt = self._format
        if fmt is None:
            raise InvalidMessageError(f"{message.event} before start")
        if self._stream_id is not None and message.stream_id not in (None, self._stream_id):
            raise InvalidMessageError(
                f"{message.event} for stream {message.stream_id}, not {self._stream_id}"
            )
        match message:
            case MediaMessage(media=media):
                return self._on_media(fmt, media)
            case DtmfMessage(dtmf=dtmf):
                return DtmfReceived(dtmf.digit.upper())
            case MarkMessage(mark=mark):
                return MarkAcknowledged(mark.name)
            case ErrorMessage(error=error):
                parts = (error.code, error.title, error.detail)
                return ProviderError(" ".join(["Telnyx error", *(str(p) for p in parts if p)]))
            case _:
                return [*self._audio(fmt, self._order.flush()), CallerHungUp("stop")]

    def _on_start(self, message: StartMessage) -> StartCall:
        if self._format is not None:
            raise InvalidMessageError("a second start on one stream")
        start = message.start
        try:
            self._format, self._big_endian = wire_format(start.media_format)
        except StreamRefusedError as exc:
            raise StreamRefusedError(f"call {start.call_control_id}: {exc}") from None
        self._stream_id = message.stream_id
        self._call_id = start.call_control_id
        params = {
            name: value
            for name, value in (
                ("from", start.from_),
                ("to", start.to),
                ("client_state", start.client_state),
            )
            if value is not None
        }
        params.update(start.custom_parameters)
        media = CallMedia(inbound=self._format, outbound=self._format, marks=True)
        return StartCall(start.call_control_id, media, params)

    def _on_media(self, fmt: AudioFormat, media: MediaInfo) -> list[Inbound] | None:
        if media.track not in (None, "inbound"):
            return None  # our own audio, as the caller hears it (both_tracks)
        payload = base64_audio(media.payload, "media payload")
        if len(payload) % fmt.frame_bytes:
            raise InvalidMessageError(f"payload of {len(payload)} bytes is not whole samples")
        ready = [payload] if media.chunk is None else self._order.push(media.chunk, payload)
        return self._audio(fmt, ready) or None

    def _audio(self, fmt: AudioFormat, payloads: list[bytes]) -> list[Inbound]:
        return [
            CallerAudio(AudioChunk(swap16(data) if self._big_endian else data, fmt))
            for data in payloads
        ]

    def outbound(self, output: CallOutput) -> Frame | CloseSocket | None:
        fmt = self._format
        if fmt is None:
            raise RuntimeError("no Telnyx stream has started on this connection")
        match output:
            case AgentAudio(chunk=chunk):
                if chunk.format != fmt:
                    raise ValueError(f"this Telnyx stream plays {fmt}, got {chunk.format}")
                data = swap16(chunk.data) if self._big_endian else chunk.data
                payload = OutboundMediaPayload(payload=base64.b64encode(data).decode())
                return OutboundMedia(media=payload).wire()
            case Mark(name=name):
                return OutboundMark(mark=OutboundMarkName(name=name)).wire()
            case ClearPlayback():
                return OutboundClear().wire()
            case HangUp(reason=reason):
                log.warning(
                    "call %s: hang-up (%s) needs Telnyx's Call Control hangup command, not "
                    "supported by this bridge; closing the media stream instead",
                    self._call_id,
                    reason,
                )
                return CloseSocket(f"hang up: {reason}")
            case Transfer() | SendDtmf():
                log.warning(
                    "call %s: %s needs a Telnyx Call Control command, not supported by this "
                    "bridge; refused",
                    self._call_id,
                    output,
                )
                return None
            case _:
                return None  # notices: Telnyx media streaming has no message for them


def mount_telnyx(app: FastAPI, calls: CallFactory, *, token: str | None) -> None:
    """Serve `WS /telnyx` on `app`; with `token` (the `stream_auth_token`), streams presenting
    it neither in `x-telnyx-streaming-auth-token` nor as `Authorization: Bearer` are refused
    (HTTP 403)."""

    @app.websocket(PATH)
    async def telnyx_stream(websocket: WebSocket) -> None:
        if not await admit(websocket, token, provider="Telnyx", token_header=TOKEN_HEADER):
            return
        reason = await run_session(websocket, TelnyxTranslator(), calls)
        log.info("Telnyx stream closed; call end reason: %s", reason)
