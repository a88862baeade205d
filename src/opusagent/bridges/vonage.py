"""Vonage Voice API WebSocket endpoint: messages, translation and route.

Protocol facts: https://developer.vonage.com/en/voice/voice-api/concepts/websockets and the NCCO
`connect` action, https://developer.vonage.com/en/voice/voice-api/ncco-reference.

An NCCO `connect` to a `websocket` endpoint (`uri` `wss://…/vonage`, `content-type`
`audio/l16;rate=8000|16000|24000`, optional `headers`) makes Vonage open `WS /vonage`. Its first
frame is text: `{"event":"websocket:connected","content-type":…}` with the NCCO `headers`
flattened beside those keys. Caller audio then comes as binary frames of 16-bit little-endian
linear PCM at that rate, 20 ms each; DTMF as text `{"event":"websocket:dtmf","digit":…,
"duration":…}`. Audio we send back must be binary frames of exactly 20 ms (Vonage drops the
others); the Call's framer makes every frame exactly that. The call ends by the socket closing.

Barge-in sends `{"action":"clear"}`, answered by `{"event":"websocket:cleared"}`. Vonage's
documentation is not settled on this message (a third-party serializer sends
`{"event":"clearAudio"}` instead); we follow the `action` form of the Vonage documentation,
which is also how every other app-to-Vonage command is written. Playback notifications
(`notify` -> `websocket:notify`) are not confirmed either, so this bridge sends no marks and the
pacer's clock stands in. Hanging up, transferring and sending digits go through the Voice REST
API, out of this socket's reach.

Vonage sends no call id on the socket: the call gets a fresh id, and the NCCO `headers` (put the
call `uuid` there to correlate) become the call's parameters.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import Annotated, Literal

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from opusagent.audio.formats import AudioChunk, AudioFormat, Encoding
from opusagent.bridges.auth import admit
from opusagent.bridges.json_frames import parse_event
from opusagent.bridges.session import (
    CallFactory,
    CloseSocket,
    Frame,
    InvalidMessageError,
    StartCall,
    StreamRefusedError,
    run_session,
)
from opusagent.call.events import (
    AgentAudio,
    CallerAudio,
    CallEvent,
    CallMedia,
    CallOutput,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    SendDtmf,
    Transfer,
)

log = logging.getLogger(__name__)

PATH = "/vonage"
RATES = frozenset({8000, 16000, 24000})
FRAME_MS = 20
CLEAR = json.dumps({"action": "clear"}, separators=(",", ":"))

# --- messages Vonage -> server -------------------------------------------------------------


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ConnectedMessage(_Inbound):
    """The first frame; every other key is one of the NCCO endpoint's `headers`."""

    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)

    event: Literal["websocket:connected"]
    content_type: str = Field(alias="content-type")


class DtmfMessage(_Inbound):
    event: Literal["websocket:dtmf"]
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")
    duration: int | None = None
    """Milliseconds the key was held."""


class ClearedMessage(_Inbound):
    """Our `clear` emptied the playback buffer."""

    event: Literal["websocket:cleared"]


class NotifyMessage(_Inbound):
    """Playback reached a `notify` (never sent by this bridge)."""

    event: Literal["websocket:notify"]


InboundMessage = Annotated[
    ConnectedMessage | DtmfMessage | ClearedMessage | NotifyMessage,
    Field(discriminator="event"),
]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
INBOUND_EVENTS = frozenset(
    {"websocket:connected", "websocket:dtmf", "websocket:cleared", "websocket:notify"}
)


def content_type_format(content_type: str) -> AudioFormat:
    """The audio format of `audio/l16;rate=N`; `StreamRefusedError` for another."""
    media_type, *parameters = (part.strip() for part in content_type.split(";"))
    options = dict(
        (name.strip().lower(), value.strip())
        for name, sep, value in (p.partition("=") for p in parameters)
        if sep
    )
    rate = options.get("rate", "")
    if media_type.lower() != "audio/l16" or not rate.isdigit() or int(rate) not in RATES:
        raise StreamRefusedError(
            f"content-type {content_type!r} is not audio/l16 at {sorted(RATES)} Hz"
        )
    return AudioFormat(Encoding.PCM16, int(rate))


def frame_bytes(fmt: AudioFormat) -> int:
    """Bytes in one 20 ms frame (320 at 8 kHz, 640 at 16 kHz, 960 at 24 kHz)."""
    return fmt.bytes_for(FRAME_MS / 1000)


class VonageTranslator:
    """Vonage WebSocket frames to `CallEvent`s and `CallOutput`s to frames, for one call."""

    def __init__(self) -> None:
        self._call_id: str | None = None
        self._format: AudioFormat | None = None

    def inbound(self, frame: Frame) -> StartCall | CallEvent | None:
        fmt = self._format
        if isinstance(frame, bytes):
            if fmt is None:
                raise InvalidMessageError("audio before websocket:connected")
            if not frame or len(frame) % fmt.frame_bytes:
                raise InvalidMessageError(f"audio frame of {len(frame)} bytes")
            return CallerAudio(AudioChunk(frame, fmt))
        message = parse_event(frame, _INBOUND, INBOUND_EVENTS)
        if isinstance(message, ConnectedMessage):
            return self._on_connected(message)
        if fmt is None:
            raise InvalidMessageError(f"{message.event} before websocket:connected")
        if isinstance(message, DtmfMessage):
            return DtmfReceived(message.digit.upper())
        return None  # websocket:cleared and websocket:notify need no action

    def _on_connected(self, message: ConnectedMessage) -> StartCall | None:
        fmt = content_type_format(message.content_type)
        if self._format is not None:
            if fmt != self._format:
                raise InvalidMessageError(
                    f"websocket:connected changes the format from {self._format} to {fmt}"
                )
            return None
        self._format = fmt
        self._call_id = f"vonage-{uuid.uuid4().hex}"
        params = {
            name: value if isinstance(value, str) else json.dumps(value)
            for name, value in (message.model_extra or {}).items()
        }
        media = CallMedia(inbound=fmt, outbound=fmt, marks=False, frame_ms=FRAME_MS)
        return StartCall(self._call_id, media, params)

    def outbound(self, output: CallOutput) -> Frame | CloseSocket | None:
        fmt = self._format
        if fmt is None:
            raise RuntimeError("no Vonage call has started on this connection")
        match output:
            case AgentAudio(chunk=chunk):
                if chunk.format != fmt or len(chunk.data) != frame_bytes(fmt):
                    raise ValueError(
                        f"Vonage plays 20 ms frames of {fmt} ({frame_bytes(fmt)} bytes), got "
                        f"{len(chunk.data)} bytes of {chunk.format}"
                    )
                return chunk.data
            case ClearPlayback():
                return CLEAR
            case HangUp(reason=reason):
                log.warning(
                    "call %s: hang-up (%s) needs Vonage's Voice REST API, not supported by this "
                    "bridge; closing the WebSocket instead (the leg then leaves the connect "
                    "action)",
                    self._call_id,
                    reason,
                )
                return CloseSocket(f"hang up: {reason}")
            case Transfer() | SendDtmf():
                log.warning(
                    "call %s: %s needs Vonage's Voice REST API, not supported by this bridge; "
                    "refused",
                    self._call_id,
                    output,
                )
                return None
            case _:
                return None  # marks and notices: not sent to Vonage


def mount_vonage(app: FastAPI, calls: CallFactory, *, token: str | None) -> None:
    """Serve `WS /vonage` on `app`; with `token`, connections without `Authorization: Bearer
    <token>` (set on the NCCO websocket endpoint) are refused (HTTP 403)."""

    @app.websocket(PATH)
    async def vonage_stream(websocket: WebSocket) -> None:
        if not await admit(websocket, token, provider="Vonage"):
            return
        reason = await run_session(websocket, VonageTranslator(), calls)
        log.info("Vonage call closed; call end reason: %s", reason)
