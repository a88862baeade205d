"""Twilio's side of a bidirectional Media Stream, for the dialler.

Facts from https://www.twilio.com/docs/voice/media-streams/websocket-messages (CATALOG §1):

- Twilio sends `connected` (no `sequenceNumber`, no `streamSid`), then `start` (`sequenceNumber`
  "1") with the stream's and call's SIDs, the `<Parameter>`s as `customParameters` and the
  `mediaFormat`, then `media` every 20 ms (`chunk` from "1", `timestamp` in ms since the stream
  started, base64 mu-law 8 kHz), `dtmf` for a key press and `stop` when the call ends.
  `sequenceNumber`, `chunk` and `timestamp` are strings of digits; `sampleRate` and `channels`
  are numbers.
- The server may send only `media` (`{"event","streamSid","media":{"payload"}}`), `mark`
  (`{"event","streamSid","mark":{"name"}}`) and `clear` (`{"event","streamSid"}`). A missing or
  extra field, an unknown event or a wrong `streamSid` is error 31951 "Stream - Protocol - Invalid
  Message"; whether Twilio then drops the stream is unconfirmed, so this far end reports it as a
  `Heard("error", …)` and ignores the message.
- Twilio echoes a `mark` once the audio sent before it has played, at once when nothing is
  buffered, and returns every pending mark on `clear`.
- The upgrade request carries `X-Twilio-Signature`: base64 HMAC-SHA1 of the stream URL with the
  account's auth token (https://twilio.com/docs/global-infrastructure/firewall-configurations/media-streams-configuration,
  computed by twilio-python's `RequestValidator`). Which form of the URL Twilio signs is not
  documented; this far end signs the `wss://` URL, as written in the TwiML.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import uuid
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from twilio.request_validator import RequestValidator

from opusagent.audio.formats import MULAW_8K, AudioFormat
from opusagent.bridges.farend import Clear, Heard, Play, PlayMarker, Reaction
from opusagent.bridges.json_frames import parse_event
from opusagent.bridges.session import Frame, InvalidMessageError

SIGNATURE_HEADER = "X-Twilio-Signature"
FRAME_MS = 20
DIGITS = frozenset("0123456789*#ABCD")
INVALID_MESSAGE = "31951 Stream - Protocol - Invalid Message"

# --- what the server may send (CATALOG §1.4): exactly these fields, nothing else -------------


class _ServerMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, populate_by_name=True)


class _Payload(_ServerMessage):
    payload: str


class _MarkName(_ServerMessage):
    name: str


class ServerMedia(_ServerMessage):
    event: Literal["media"]
    stream_sid: str = Field(alias="streamSid")
    media: _Payload


class ServerMark(_ServerMessage):
    event: Literal["mark"]
    stream_sid: str = Field(alias="streamSid")
    mark: _MarkName


class ServerClear(_ServerMessage):
    event: Literal["clear"]
    stream_sid: str = Field(alias="streamSid")


ServerMessage = Annotated[ServerMedia | ServerMark | ServerClear, Field(discriminator="event")]
_SERVER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
SERVER_EVENTS = frozenset({"media", "mark", "clear"})


def _sid(prefix: str) -> str:
    """A SID shaped like Twilio's: two letters and 32 hex digits."""
    return prefix + uuid.uuid4().hex


class TwilioMediaFarEnd:
    """Twilio's side of one Media Stream (implements `opusagent.bridges.farend.FarEnd`).

    `parameters` become `start.customParameters`. With `auth_token`, the upgrade request is
    signed over `signed_url` (the stream URL as Twilio would know it, `wss://…`).
    """

    def __init__(
        self,
        *,
        call_sid: str | None = None,
        stream_sid: str | None = None,
        account_sid: str | None = None,
        parameters: Mapping[str, str] | None = None,
        auth_token: str | None = None,
        signed_url: str | None = None,
    ) -> None:
        if auth_token is not None and signed_url is None:
            raise ValueError("a signature needs the URL it signs (signed_url)")
        self.call_sid = call_sid or _sid("CA")
        self.stream_sid = stream_sid or _sid("MZ")
        self.account_sid = account_sid or _sid("AC")
        self.parameters = dict(parameters or {})
        self._auth_token = auth_token
        self._signed_url = signed_url
        self._sequence = itertools.count(1)
        self._chunks = itertools.count(1)

    @classmethod
    def for_url(cls, url: str, *, token: str | None = None) -> TwilioMediaFarEnd:
        """A far end dialling `url`; with `token` (the auth token) it signs the `wss://` form of
        `url`."""
        parts = urlsplit(url)
        signed = urlunsplit(parts._replace(scheme="wss"))
        return cls(auth_token=token, signed_url=signed if token else None)

    def resumed(self) -> TwilioMediaFarEnd:
        """A new stream of the same call (same call SID, parameters and signature)."""
        return TwilioMediaFarEnd(
            call_sid=self.call_sid,
            account_sid=self.account_sid,
            parameters=self.parameters,
            auth_token=self._auth_token,
            signed_url=self._signed_url,
        )

    @property
    def audio_format(self) -> AudioFormat:
        return MULAW_8K

    @property
    def frame_ms(self) -> int:
        return FRAME_MS

    @property
    def waits_for_ready(self) -> bool:
        return False  # Twilio streams right after `start`; there is no handshake.

    def headers(self) -> Mapping[str, str]:
        if self._auth_token is None or self._signed_url is None:
            return {}
        validator = RequestValidator(self._auth_token)
        return {SIGNATURE_HEADER: str(validator.compute_signature(self._signed_url, {}))}

    def opening(self) -> list[Frame]:
        connected = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
        start = {
            "streamSid": self.stream_sid,
            "accountSid": self.account_sid,
            "callSid": self.call_sid,
            "tracks": ["inbound"],
            "customParameters": self.parameters,
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        }
        return [json.dumps(connected), self._message("start", start=start)]

    def audio(self, data: bytes) -> Frame:
        chunk = next(self._chunks)
        media = {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str((chunk - 1) * FRAME_MS),
            "payload": base64.b64encode(data).decode(),
        }
        return self._message("media", media=media)

    def dtmf(self, digit: str) -> list[Frame]:
        if digit.upper() not in DIGITS:
            raise ValueError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")
        return [self._message("dtmf", dtmf={"track": "inbound_track", "digit": digit.upper()})]

    def hangup(self) -> list[Frame]:
        stop = {"accountSid": self.account_sid, "callSid": self.call_sid}
        return [self._message("stop", stop=stop)]

    def marker_played(self, token: str) -> Frame | None:
        return self._message("mark", mark={"name": token})

    def receive(self, frame: Frame) -> list[Reaction]:
        if isinstance(frame, bytes):
            return [_invalid("a binary frame (Media Streams takes text frames only)")]
        try:
            message = parse_event(frame, _SERVER, SERVER_EVENTS)
        except InvalidMessageError as exc:
            return [_invalid(str(exc))]
        if message.stream_sid != self.stream_sid:
            return [
                _invalid(f"{message.event} for stream {message.stream_sid}, not {self.stream_sid}")
            ]
        match message:
            case ServerMedia(media=media):
                try:
                    return [Play(base64.b64decode(media.payload, validate=True))]
                except binascii.Error:
                    return [_invalid("media payload is not base64")]
            case ServerMark(mark=mark):
                return [PlayMarker(mark.name)]
            case ServerClear():
                return [Clear()]

    def _message(self, event: str, **body: object) -> str:
        """Every message but `connected`: numbered, and stamped with the stream's SID."""
        message = {"event": event, "sequenceNumber": str(next(self._sequence)), **body}
        message["streamSid"] = self.stream_sid
        return json.dumps(message)


def _invalid(problem: str) -> Heard:
    return Heard("error", f"{INVALID_MESSAGE}: {problem}", {"code": 31951})
