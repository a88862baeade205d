"""Azure Communication Services bidirectional media streaming: messages, translation and route.

Protocol facts:

- streaming set-up, message schema and StopAudio on barge-in:
  https://learn.microsoft.com/azure/communication-services/how-tos/call-automation/audio-streaming-quickstart
- outbound shapes: the Call Automation SDKs' `OutStreamingData` (JS
  `@azure/communication-call-automation`, .NET `Azure.Communication.CallAutomation`)

ACS opens `WS /acs` (the `transportUrl` of `mediaStreamingOptions`, which must set
`enableBidirectional` for our audio to be played, and the `mixed` audio channel: one stream
for the call). Every frame is JSON text with a `kind`: `AudioMetadata` first (encoding `PCM`,
16 or 24 kHz mono, packet `length` in bytes), then `AudioData` (base64 PCM16LE, `silent` on
silence buffers) and `DtmfData` (with `enableDtmfTones`). ACS has no in-band stop: it closes the
socket when streaming stops or the call ends. We send `AudioData` at the session rate and
`StopAudio` ("stop the queued up audio") on barge-in.

The SDKs write these keys in camelCase (JS) and PascalCase (.NET, and Microsoft's Python
samples), so ACS reads them case-insensitively; we read every key and `kind` value the same way.
There are no playback marks (the newest SDK's `MarkData` wire format is unknown), so the pacer's
clock stands in. Hanging up, transferring and sending digits are Call Automation REST operations,
out of this socket's reach.

The call's id is `audioMetadata.subscriptionId`; the query string of the transport URL (chosen by
the application that started the stream) becomes the call's parameters.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter

from opusagent.audio.formats import PCM16_16K, PCM16_24K, AudioChunk, AudioFormat
from opusagent.bridges.auth import admit
from opusagent.bridges.json_frames import base64_audio, json_object, validate
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

PATH = "/acs"
FORMATS = {16000: PCM16_16K, 24000: PCM16_24K}
"""`audioFormat` `Pcm16KMono` (the default) and `Pcm24KMono`."""
PACKET_S = 0.02
"""Packet duration when AudioMetadata gives no `length` (640 bytes at 16 kHz is 20 ms)."""

# --- messages ACS -> server ----------------------------------------------------------------
# Keys are folded to lower case before validation, so the aliases are lower case. Fields the
# bridge does not use are optional; unknown extra fields are ignored.


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class AudioMetadata(_Inbound):
    subscription_id: str = Field(alias="subscriptionid", min_length=1)
    encoding: str
    """`PCM`."""
    sample_rate: int = Field(alias="samplerate")
    channels: int
    length: int | None = None
    """Bytes in each AudioData packet (640 = 20 ms at 16 kHz)."""


class AudioMetadataMessage(_Inbound):
    """The first message of a stream."""

    audio_metadata: AudioMetadata = Field(alias="audiometadata")


class AudioData(_Inbound):
    data: str = ""
    """Base64 PCM16LE mono at the session rate; may be absent when `silent` (not documented)."""
    timestamp: str | None = None
    participant_raw_id: str | None = Field(None, alias="participantrawid")
    """`4:+1555…` (PSTN), `8:acs:…` (ACS user); empty or absent for mixed audio."""
    silent: bool = False


class AudioDataMessage(_Inbound):
    audio_data: AudioData = Field(alias="audiodata")


class DtmfData(_Inbound):
    data: str = Field(pattern=r"^[0-9*#A-Da-d]$")


class DtmfDataMessage(_Inbound):
    dtmf_data: DtmfData = Field(alias="dtmfdata")


def _kind(raw: Any) -> str | None:
    kind = raw.get("kind") if isinstance(raw, dict) else None
    return kind.lower() if isinstance(kind, str) else None


InboundMessage = Annotated[
    Annotated[AudioMetadataMessage, Tag("audiometadata")]
    | Annotated[AudioDataMessage, Tag("audiodata")]
    | Annotated[DtmfDataMessage, Tag("dtmfdata")],
    Discriminator(_kind),
]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
INBOUND_KINDS = frozenset({"audiometadata", "audiodata", "dtmfdata"})
_NOT_FOR_US = frozenset({"transcriptionmetadata", "transcriptiondata"})
"""Kinds the SDK parser knows (real-time transcription) that a media bridge has no use for."""

# --- messages server -> ACS ----------------------------------------------------------------


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def wire(self) -> str:
        return self.model_dump_json(by_alias=True)


class OutboundAudio(_Outbound):
    data: str
    """Base64 PCM16LE mono at the session rate."""


class OutboundAudioData(_Outbound):
    """`{"kind":"AudioData","audioData":{"data":…}}`: queued for playback in order."""

    kind: str = "AudioData"
    audio_data: OutboundAudio = Field(alias="audioData")


class _Empty(_Outbound):
    pass


class OutboundStopAudio(_Outbound):
    """`{"kind":"StopAudio","stopAudio":{}}`: drop the queued audio."""

    kind: str = "StopAudio"
    stop_audio: _Empty = Field(default_factory=_Empty, alias="stopAudio")


def acs_media(fmt: AudioFormat) -> CallMedia:
    """The same PCM16 format both ways; no marks."""
    return CallMedia(inbound=fmt, outbound=fmt, marks=False)


class AcsTranslator:
    """ACS media streaming messages to `CallEvent`s and `CallOutput`s to messages, for one
    stream."""

    def __init__(self, params: Mapping[str, str] | None = None) -> None:
        self._params = dict(params or {})
        self._subscription: str | None = None
        self._format: AudioFormat | None = None
        self._silence = b""

    def inbound(self, frame: Frame) -> StartCall | CallEvent | None:
        if isinstance(frame, bytes):
            raise InvalidMessageError("binary frame; ACS media streaming uses text frames only")
        message = _parse(frame)
        if message is None:
            return None
        if isinstance(message, AudioMetadataMessage):
            return self._on_metadata(message.audio_metadata)
        fmt = self._format
        if fmt is None:
            raise InvalidMessageError("media before AudioMetadata")
        if isinstance(message, DtmfDataMessage):
            return DtmfReceived(message.dtmf_data.data.upper())
        audio = message.audio_data
        data = base64_audio(audio.data, "audio data")
        if not data:
            if not audio.silent:
                raise InvalidMessageError("AudioData without data")
            data = self._silence  # a silence buffer still takes its time
        if len(data) % fmt.frame_bytes:
            raise InvalidMessageError(f"AudioData of {len(data)} bytes is not whole samples")
        return CallerAudio(AudioChunk(data, fmt))

    def _on_metadata(self, meta: AudioMetadata) -> StartCall | None:
        fmt = FORMATS.get(meta.sample_rate)
        if meta.encoding.upper() != "PCM" or meta.channels != 1 or fmt is None:
            raise StreamRefusedError(
                f"subscription {meta.subscription_id}: audio {meta.encoding}/{meta.sample_rate} "
                f"Hz/{meta.channels} ch is not PCM 16000 or 24000 Hz mono"
            )
        if self._format is not None:
            if fmt != self._format:
                raise InvalidMessageError(
                    f"AudioMetadata changes the format from {self._format} to {fmt} mid-stream"
                )
            return None
        self._subscription = meta.subscription_id
        self._format = fmt
        length = meta.length if meta.length and meta.length > 0 else fmt.bytes_for(PACKET_S)
        self._silence = bytes(length - length % fmt.frame_bytes)
        return StartCall(meta.subscription_id, acs_media(fmt), self._params)

    def outbound(self, output: CallOutput) -> Frame | CloseSocket | None:
        if self._format is None:
            raise RuntimeError("no ACS stream has started on this connection")
        match output:
            case AgentAudio(chunk=chunk):
                if chunk.format != self._format:
                    raise ValueError(f"this ACS stream plays {self._format}, got {chunk.format}")
                audio = OutboundAudio(data=base64.b64encode(chunk.data).decode())
                return OutboundAudioData(audio_data=audio).wire()
            case ClearPlayback():
                return OutboundStopAudio().wire()
            case HangUp(reason=reason):
                log.warning(
                    "subscription %s: hang-up (%s) needs the Call Automation hangUp operation, "
                    "not supported by this bridge; closing the media stream (the call itself "
                    "stays up until Call Automation ends it)",
                    self._subscription,
                    reason,
                )
                return CloseSocket(f"hang up: {reason}")
            case Transfer() | SendDtmf():
                log.warning(
                    "subscription %s: %s needs a Call Automation operation, not supported by "
                    "this bridge; refused",
                    self._subscription,
                    output,
                )
                return None
            case _:
                return None  # marks and notices: ACS media streaming has no message for them


def _parse(text: str) -> InboundMessage | None:
    """The message in `text`; None for a kind meant for another consumer."""
    raw = _fold_keys(json_object(text))
    kind = raw.get("kind")
    if not isinstance(kind, str):
        raise InvalidMessageError(f"no kind: {text[:80]!r}")
    if kind.lower() in _NOT_FOR_US:
        log.debug("ignoring a %s message", kind)
        return None
    if kind.lower() not in INBOUND_KINDS:
        raise InvalidMessageError(f"unknown kind {kind!r}")
    return validate(_INBOUND, raw, kind)


def _fold_keys(value: Any) -> Any:
    """`value` with every object key in lower case, at every depth."""
    if isinstance(value, dict):
        return {str(key).lower(): _fold_keys(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_fold_keys(item) for item in value]
    return value


def mount_acs(app: FastAPI, calls: CallFactory, *, token: str | None) -> None:
    """Serve `WS /acs` on `app`; with `token`, streams without `Authorization: Bearer <token>`
    are refused (HTTP 403)."""

    @app.websocket(PATH)
    async def acs_stream(websocket: WebSocket) -> None:
        if not await admit(websocket, token, provider="ACS"):
            return
        translator = AcsTranslator(dict(websocket.query_params))
        reason = await run_session(websocket, translator, calls)
        log.info("ACS stream closed; call end reason: %s", reason)
