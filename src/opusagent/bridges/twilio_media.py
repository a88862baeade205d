"""Twilio Media Streams (bidirectional, `<Connect><Stream>`): messages, translation and routes.

Protocol facts come from Twilio's documentation:

- messages: https://www.twilio.com/docs/voice/media-streams/websocket-messages
- TwiML `<Stream>`: https://www.twilio.com/docs/voice/twiml/stream
- handshake errors: https://www.twilio.com/docs/api/errors/31920
- signature on the upgrade: https://twilio.com/docs/global-infrastructure/firewall-configurations/media-streams-configuration
  (algorithm as in twilio-python's `twilio/request_validator.py`)

Routes: `WS /twilio/media` (the stream) and `POST /twilio/voice` (the number's Voice URL, which
answers TwiML connecting the call to the stream). The agent's hang-ups and transfers go through
Twilio's REST API when it is configured (`twilio_rest`); a stream cannot send DTMF.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from fastapi import FastAPI, HTTPException, Request, Response, WebSocket
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from starlette.datastructures import URL
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import (
    Connect,
    Parameter,
    Stream,
    VoiceResponse,
)

from opusagent.audio.formats import MULAW_8K, AudioChunk
from opusagent.bridges.json_frames import base64_audio, parse_event
from opusagent.bridges.session import (
    POLICY_VIOLATION,
    Act,
    CallFactory,
    CloseSocket,
    Frame,
    InvalidMessageError,
    Outbound,
    StartCall,
    StreamRefusedError,
    run_session,
)
from opusagent.bridges.twilio_rest import TwilioRest
from opusagent.call.events import (
    AgentAudio,
    CallerAudio,
    CallerHungUp,
    CallEvent,
    CallMedia,
    CallOutput,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    Mark,
    MarkAcknowledged,
    SendDtmf,
    Transfer,
)

log = logging.getLogger(__name__)

MEDIA_PATH = "/twilio/media"
VOICE_PATH = "/twilio/voice"
SIGNATURE_HEADER = "X-Twilio-Signature"
FORWARDED_CALL_FIELDS = ("From", "To", "Direction")
"""Voice webhook form fields passed on to the stream as `<Parameter>`s (`customParameters`)."""

# --- messages Twilio -> server -------------------------------------------------------------
# https://www.twilio.com/docs/voice/media-streams/websocket-messages: every value is a string
# except mediaFormat's sampleRate and channels. Fields the bridge does not use are optional, so
# a message Twilio sends without them still goes through; unknown extra fields are ignored.


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class ConnectedMessage(_Inbound):
    """First message on the socket: `{"event":"connected","protocol":"Call","version":"1.0.0"}`."""

    event: Literal["connected"]
    protocol: str | None = None
    version: str | None = None


class MediaFormat(_Inbound):
    """Inbound audio: always `audio/x-mulaw`, 8000 Hz, 1 channel for Media Streams."""

    encoding: str
    sample_rate: int = Field(alias="sampleRate")
    channels: int


class StartInfo(_Inbound):
    stream_sid: str = Field(alias="streamSid")
    account_sid: str | None = Field(None, alias="accountSid")
    call_sid: str = Field(alias="callSid")
    tracks: list[str] = Field(default_factory=list)
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")
    """The `<Parameter>`s of the TwiML `<Stream>`."""
    media_format: MediaFormat = Field(alias="mediaFormat")


class StartMessage(_Inbound):
    """Sent once, right after `connected` (`sequenceNumber` "1")."""

    event: Literal["start"]
    sequence_number: str | None = Field(None, alias="sequenceNumber")
    start: StartInfo
    stream_sid: str | None = Field(None, alias="streamSid")


class MediaInfo(_Inbound):
    track: str | None = None
    chunk: str | None = None
    """Starts at "1", incremented per media message."""
    timestamp: str | None = None
    """Milliseconds since the stream started."""
    payload: str
    """Base64 of raw mu-law 8 kHz audio (20 ms = 160 bytes by convention), no file header."""


class MediaMessage(_Inbound):
    event: Literal["media"]
    sequence_number: str | None = Field(None, alias="sequenceNumber")
    media: MediaInfo
    stream_sid: str | None = Field(None, alias="streamSid")


class DtmfInfo(_Inbound):
    track: str | None = None
    """`inbound_track`."""
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")


class DtmfMessage(_Inbound):
    """A key the caller pressed (bidirectional streams only)."""

    event: Literal["dtmf"]
    stream_sid: str | None = Field(None, alias="streamSid")
    sequence_number: str | None = Field(None, alias="sequenceNumber")
    dtmf: DtmfInfo


class MarkInfo(_Inbound):
    name: str


class MarkMessage(_Inbound):
    """Echo of a mark we sent: its audio finished playing, `clear` was sent, or nothing was
    buffered."""

    event: Literal["mark"]
    sequence_number: str | None = Field(None, alias="sequenceNumber")
    stream_sid: str | None = Field(None, alias="streamSid")
    mark: MarkInfo


class StopInfo(_Inbound):
    account_sid: str | None = Field(None, alias="accountSid")
    call_sid: str | None = Field(None, alias="callSid")


class StopMessage(_Inbound):
    """The call ended; for a bidirectional stream, ending the call is the only way to stop it."""

    event: Literal["stop"]
    sequence_number: str | None = Field(None, alias="sequenceNumber")
    stop: StopInfo = Field(default_factory=StopInfo)
    stream_sid: str | None = Field(None, alias="streamSid")


InboundMessage = Annotated[
    ConnectedMessage | StartMessage | MediaMessage | DtmfMessage | MarkMessage | StopMessage,
    Field(discriminator="event"),
]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
INBOUND_EVENTS = frozenset({"connected", "start", "media", "dtmf", "mark", "stop"})

# --- messages server -> Twilio -------------------------------------------------------------
# Exactly these fields: a missing or extra field, an unknown type or a wrong streamSid is error
# 31951 "Stream - Protocol - Invalid Message" (CATALOG §1.4, quoted from a Q&A page).


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def wire(self) -> str:
        return self.model_dump_json(by_alias=True)


class OutboundMediaPayload(_Outbound):
    payload: str
    """Base64 of raw audio/x-mulaw 8000 Hz, any length, no file header."""


class OutboundMedia(_Outbound):
    """`{"event":"media","streamSid":…,"media":{"payload":…}}`: queued for playback in order."""

    event: Literal["media"] = "media"
    stream_sid: str = Field(alias="streamSid")
    media: OutboundMediaPayload


class OutboundMarkName(_Outbound):
    name: str


class OutboundMark(_Outbound):
    """`{"event":"mark","streamSid":…,"mark":{"name":…}}`: echoed once the audio before it
    has played."""

    event: Literal["mark"] = "mark"
    stream_sid: str = Field(alias="streamSid")
    mark: OutboundMarkName


class OutboundClear(_Outbound):
    """`{"event":"clear","streamSid":…}`: drops buffered audio and returns every pending mark."""

    event: Literal["clear"] = "clear"
    stream_sid: str = Field(alias="streamSid")


TWILIO_MEDIA = CallMedia(inbound=MULAW_8K, outbound=MULAW_8K, marks=True)


class TwilioTranslator:
    """Twilio Media Streams messages to `CallEvent`s and `CallOutput`s to messages, for one
    stream."""

    def __init__(self, rest: TwilioRest | None = None) -> None:
        self._rest = rest
        self._stream_sid: str | None = None
        self._call_sid: str | None = None

    @property
    def stream_sid(self) -> str | None:
        return self._stream_sid

    def inbound(self, frame: Frame) -> StartCall | CallEvent | None:
        if isinstance(frame, bytes):
            raise InvalidMessageError("binary frame; Media Streams uses text frames only")
        message = parse_event(frame, _INBOUND, INBOUND_EVENTS)
        if isinstance(message, ConnectedMessage):
            return None
        if isinstance(message, StartMessage):
            return self._on_start(message)
        if self._stream_sid is not None and message.stream_sid not in (None, self._stream_sid):
            raise InvalidMessageError(
                f"{message.event} for stream {message.stream_sid}, not {self._stream_sid}"
            )
        match message:
            case MediaMessage(media=media):
                return CallerAudio(
                    AudioChunk(base64_audio(media.payload, "media payload"), MULAW_8K)
                )
            case DtmfMessage(dtmf=dtmf):
                return DtmfReceived(dtmf.digit.upper())
            case MarkMessage(mark=mark):
                return MarkAcknowledged(mark.name)
            case _:
                return CallerHungUp("stop")

    def _on_start(self, message: StartMessage) -> StartCall:
        start = message.start
        fmt = start.media_format
        if (fmt.encoding, fmt.sample_rate, fmt.channels) != ("audio/x-mulaw", 8000, 1):
            raise StreamRefusedError(
                f"call {start.call_sid}: media format {fmt.encoding}/{fmt.sample_rate} Hz/"
                f"{fmt.channels} ch is not audio/x-mulaw 8000 Hz mono"
            )
        self._stream_sid = start.stream_sid
        self._call_sid = start.call_sid
        return StartCall(start.call_sid, TWILIO_MEDIA, start.custom_parameters)

    def outbound(self, output: CallOutput) -> Outbound | list[Outbound] | None:
        sid = self._stream_sid
        call_sid = self._call_sid
        if sid is None or call_sid is None:
            raise RuntimeError("no Twilio stream has started on this connection")
        match output:
            case AgentAudio(chunk=chunk):
                if chunk.format != MULAW_8K:
                    raise ValueError(f"Twilio plays only {MULAW_8K}, got {chunk.format}")
                payload = OutboundMediaPayload(payload=base64.b64encode(chunk.data).decode())
                return OutboundMedia(stream_sid=sid, media=payload).wire()
            case Mark(name=name):
                return OutboundMark(stream_sid=sid, mark=OutboundMarkName(name=name)).wire()
            case ClearPlayback():
                return OutboundClear(stream_sid=sid).wire()
            case HangUp(reason=reason):
                return self._hang_up(call_sid, reason)
            case Transfer(target=target):
                rest = self._rest
                if rest is None:
                    log.warning(
                        "call %s: transfer to %s is not yet supported: it needs Twilio's REST "
                        "API (set twilio_account_sid and twilio_auth_token)",
                        call_sid,
                        target,
                    )
                    return None
                return Act(
                    f"transfer of call {call_sid} to {target}",
                    lambda: rest.transfer(call_sid, target),
                )
            case SendDtmf(digits=digits):
                # A stream cannot carry DTMF out, and the REST way (`<Play digits>` TwiML)
                # replaces the call's TwiML, which ends this stream (CATALOG §1.7).
                log.warning(
                    "call %s: sending DTMF %s is not yet supported on Media Streams: Twilio "
                    "would play it only by replacing the call's TwiML, ending this stream",
                    call_sid,
                    digits,
                )
                return None
            case _:
                return None  # notices: Media Streams has no message for them

    def _hang_up(self, call_sid: str, reason: str) -> Outbound | list[Outbound]:
        # Closing the socket leaves <Connect>; with no TwiML after it the call ends
        # (https://www.twilio.com/docs/voice/twiml/stream). The REST API ends it whatever
        # TwiML follows; the socket is closed as well, in case that request fails.
        close = CloseSocket(f"hang up: {reason}")
        rest = self._rest
        if rest is None:
            log.info("call %s: hanging up (%s) by closing the stream", call_sid, reason)
            return close

        async def hang_up() -> None:
            await rest.hang_up(call_sid)

        return [Act(f"hang-up of call {call_sid}", hang_up), close]


# --- TwiML and the webhook -----------------------------------------------------------------


def stream_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """`<Response><Connect><Stream url=…>` with one `<Parameter>` per item.

    `<Connect><Stream>` is the bidirectional form; `url` must be `wss://` and may not carry a
    query string, so call data travels as `<Parameter>`s into `start.customParameters`
    (https://www.twilio.com/docs/voice/twiml/stream).
    """
    stream = Stream(url=stream_url)
    for name, value in parameters.items():
        stream.append(Parameter(name=name, value=value))
    connect = Connect()
    connect.append(stream)
    response = VoiceResponse()
    response.append(connect)
    return str(response.to_xml())


class TwilioSignature:
    """Checks `X-Twilio-Signature`: base64 HMAC-SHA1 of the URL (plus sorted POST parameters)
    with the account's auth token, computed by twilio-python's `RequestValidator`.

    Which form of a stream's URL Twilio signs (`wss://` as in the TwiML, or `https://`) is not
    documented, so both are accepted.
    """

    def __init__(self, auth_token: str) -> None:
        self._validator = RequestValidator(auth_token)

    def valid(self, signature: str | None, urls: Iterable[str], params: Mapping[str, str]) -> bool:
        if not signature:
            return False
        return any(bool(self._validator.validate(url, dict(params), signature)) for url in urls)


class PublicOrigin:
    """The scheme and host Twilio reaches this server at: `public_url` (e.g.
    `https://voice.example.com`) or, unset, each request's own Host header and scheme."""

    def __init__(self, public_url: str | None) -> None:
        self._public = urlsplit(public_url) if public_url else None

    def host(self, url: URL) -> str:
        return self._public.netloc if self._public is not None else url.netloc

    def url(self, url: URL, path: str) -> str:
        """The URL of `path` on this server for Twilio's HTTP requests (https in production)."""
        scheme = self._public.scheme if self._public is not None else url.scheme
        return f"{scheme}://{self.host(url)}{path}"

    def wss(self, url: URL, path: str) -> str:
        """The `wss://` URL of `path` on this server, as TwiML must give it."""
        return f"wss://{self.host(url)}{path}"


class TwilioWebhooks:
    """Twilio's requests to this server: their signatures (when an auth token is set) and the
    public URLs they are made to."""

    def __init__(self, *, auth_token: str | None, public_url: str | None) -> None:
        self.signature = TwilioSignature(auth_token) if auth_token else None
        self.origin = PublicOrigin(public_url)

    async def accept(self, websocket: WebSocket) -> bool:
        """Accept a stream's upgrade; without a valid signature refuse it (HTTP 403) and say so."""
        if self.signature is not None:
            url = websocket.url
            target = _path_and_query(url.path, url.query)
            urls = (self.origin.wss(url, target), f"https://{self.origin.host(url)}{target}")
            if not self.signature.valid(websocket.headers.get(SIGNATURE_HEADER), urls, {}):
                log.warning("refusing a Twilio stream with a missing or invalid signature")
                await websocket.close(code=POLICY_VIOLATION)  # before accept: HTTP 403
                return False
        await websocket.accept()
        return True

    async def form(self, request: Request) -> dict[str, str]:
        """A webhook's form fields, once its signature is checked (HTTP 403 if not valid)."""
        form = dict(parse_qsl((await request.body()).decode(), keep_blank_values=True))
        if self.signature is not None:
            url = request.url
            signed = self.origin.url(url, _path_and_query(url.path, url.query))
            if not self.signature.valid(request.headers.get(SIGNATURE_HEADER), (signed,), form):
                raise HTTPException(403, f"Missing or invalid {SIGNATURE_HEADER}.")
        return form


def call_parameters(form: Mapping[str, str], query: Mapping[str, str]) -> dict[str, str]:
    """The `<Parameter>`s for an answered call: its From/To/Direction and the Voice URL's query
    parameters (e.g. `?agent=bank`), which a stream URL cannot carry itself."""
    parameters = {name: form[name] for name in FORWARDED_CALL_FIELDS if name in form}
    parameters.update(query)
    return parameters


def mount_twilio_media(
    app: FastAPI,
    calls: CallFactory,
    *,
    auth_token: str | None,
    public_url: str | None,
    rest: TwilioRest | None = None,
) -> None:
    """Serve `WS /twilio/media` and `POST /twilio/voice` on `app`.

    `calls` builds the Call of each stream. With `auth_token`, requests without a valid
    `X-Twilio-Signature` are refused (HTTP 403). `public_url` is the scheme and host Twilio
    reaches this server at (e.g. `https://voice.example.com`); unset, the request's Host
    header stands in. With `rest`, the agent's hang-ups and transfers go through Twilio's REST
    API.
    """
    webhooks = TwilioWebhooks(auth_token=auth_token, public_url=public_url)

    @app.websocket(MEDIA_PATH)
    async def twilio_media(websocket: WebSocket) -> None:
        if not await webhooks.accept(websocket):
            return
        reason = await run_session(websocket, TwilioTranslator(rest), calls)
        log.info("Twilio stream closed; call end reason: %s", reason)

    @app.post(VOICE_PATH, summary="Twilio Voice URL: connect the call to the media stream")
    async def twilio_voice(request: Request) -> Response:
        form = await webhooks.form(request)
        parameters = call_parameters(form, request.query_params)
        twiml = stream_twiml(webhooks.origin.wss(request.url, MEDIA_PATH), parameters)
        return Response(twiml, media_type="text/xml")


def _path_and_query(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path
