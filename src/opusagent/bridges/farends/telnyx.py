"""Telnyx's side of a bidirectional media stream (RTP mode), for the dialler.

Facts (https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket,
CATALOG §5.1):

- Telnyx sends `connected`, then `start` (`sequence_number` "1", `stream_id`, the call's ids,
  `custom_parameters`, `media_format`), then `media` every 20 ms (`track`, `chunk`,
  `timestamp`, base64 RTP payload), `dtmf` for a key and `stop` when streaming stops. With a
  `stream_auth_token` the upgrade carries it in `x-telnyx-streaming-auth-token` (and the
  `connected` frame repeats it).
- The server may send `media` (`{"event","media":{"payload"}}`, 20 ms to 30 s of audio in the
  bidirectional codec), `mark` (`{"event","mark":{"name"}}`, sent back once the media before it
  has played, at once when nothing is queued) and `clear` (`{"event"}`: drop queued media and
  return queued marks). Anything else is reported as `Heard("error", …)` and ignored.
- L16 travels big-endian (network byte order); this far end speaks PCM16LE to the dialler and
  swaps on the wire.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from opusagent.audio.formats import ALAW_8K, MULAW_8K, AudioFormat, Encoding
from opusagent.bridges.farend import Clear, Heard, Play, PlayMarker, Reaction
from opusagent.bridges.json_frames import parse_event
from opusagent.bridges.session import Frame, InvalidMessageError
from opusagent.bridges.telnyx import L16_RATES, TOKEN_HEADER, swap16

FRAME_MS = 20
MAX_MEDIA_S = 30.0
DIGITS = frozenset("0123456789*#ABCD")
_G711 = {"PCMU": MULAW_8K, "PCMA": ALAW_8K}

# --- what the server may send: exactly these fields ------------------------------------------


class _ServerMessage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class _Payload(_ServerMessage):
    payload: str


class _MarkName(_ServerMessage):
    name: str


class ServerMedia(_ServerMessage):
    event: Literal["media"]
    media: _Payload


class ServerMark(_ServerMessage):
    event: Literal["mark"]
    mark: _MarkName


class ServerClear(_ServerMessage):
    event: Literal["clear"]


ServerMessage = Annotated[ServerMedia | ServerMark | ServerClear, Field(discriminator="event")]
_SERVER: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
SERVER_EVENTS = frozenset({"media", "mark", "clear"})


class TelnyxFarEnd:
    """Telnyx's side of one media stream (implements `opusagent.bridges.farend.FarEnd`).

    `encoding` is the `stream_codec` (and the bidirectional codec): `PCMU` or `PCMA` at 8 kHz,
    or `L16` at `sample_rate`. With `token` (the `stream_auth_token`) the upgrade carries it in
    `x-telnyx-streaming-auth-token`, or as `Authorization: Bearer` with `bearer=True`.
    """

    def __init__(
        self,
        *,
        encoding: Literal["PCMU", "PCMA", "L16"] = "PCMU",
        sample_rate: int = 8000,
        call_control_id: str | None = None,
        stream_id: str | None = None,
        custom_parameters: Mapping[str, str] | None = None,
        token: str | None = None,
        bearer: bool = False,
    ) -> None:
        if encoding == "L16":
            if sample_rate not in L16_RATES:
                raise ValueError(f"L16 streams at {sorted(L16_RATES)} Hz, not {sample_rate}")
            self._format = AudioFormat(Encoding.PCM16, sample_rate)
        elif sample_rate == 8000:
            self._format = _G711[encoding]
        else:
            raise ValueError(f"{encoding} streams at 8000 Hz, not {sample_rate}")
        self.encoding = encoding
        self.call_control_id = call_control_id or f"v3:{uuid.uuid4().hex}"
        self.stream_id = stream_id or str(uuid.uuid4())
        self.custom_parameters = dict(custom_parameters or {})
        self._token = token
        self._bearer = bearer
        self._sequence = itertools.count(1)
        self._chunks = itertools.count(1)

    @classmethod
    def for_url(cls, url: str, *, token: str | None = None) -> TelnyxFarEnd:
        """A PCMU far end dialling `url`; `token` is the `stream_auth_token`."""
        return cls(token=token)

    def resumed(self) -> TelnyxFarEnd:
        """A new stream of the same call (same call_control_id)."""
        return TelnyxFarEnd(
            encoding=self.encoding,
            sample_rate=self._format.sample_rate,
            call_control_id=self.call_control_id,
            custom_parameters=self.custom_parameters,
            token=self._token,
            bearer=self._bearer,
        )

    @property
    def audio_format(self) -> AudioFormat:
        return self._format

    @property
    def frame_ms(self) -> int:
        return FRAME_MS

    @property
    def waits_for_ready(self) -> bool:
        return False  # Telnyx streams right after `start`; there is no handshake.

    def headers(self) -> Mapping[str, str]:
        if self._token is None:
            return {}
        if self._bearer:
            return {"Authorization": f"Bearer {self._token}"}
        return {TOKEN_HEADER: self._token}

    def opening(self) -> list[Frame]:
        connected: dict[str, object] = {"event": "connected", "version": "1.0.0"}
        if self._token is not None:
            connected["connected"] = {TOKEN_HEADER: self._token}
        start = {
            "user_id": str(uuid.UUID(int=0)),
            "call_control_id": self.call_control_id,
            "call_session_id": str(uuid.uuid4()),
            "from": "+15550100",
            "to": "+15550199",
            "custom_parameters": self.custom_parameters,
            "media_format": {
                "encoding": self.encoding,
                "sample_rate": self._format.sample_rate,
                "channels": 1,
            },
        }
        return [json.dumps(connected), self._message("start", start=start)]

    def audio(self, data: bytes) -> Frame:
        chunk = next(self._chunks)
        return self.media(chunk, data)

    def media(self, chunk: int, data: bytes) -> str:
        """The `media` message for caller audio `data` numbered `chunk` (to send frames out of
        order)."""
        wire = swap16(data) if self.encoding == "L16" else data
        media = {
            "track": "inbound",
            "chunk": str(chunk),
            "timestamp": str((chunk - 1) * FRAME_MS),
            "payload": base64.b64encode(wire).decode(),
        }
        return self._message("media", media=media)

    def dtmf(self, digit: str) -> list[Frame]:
        if digit.upper() not in DIGITS:
            raise ValueError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")
        occurred_at = datetime.now(UTC).isoformat(timespec="milliseconds")
        return [self._message("dtmf", occurred_at=occurred_at, dtmf={"digit": digit.upper()})]

    def hangup(self) -> list[Frame]:
        stop = {"user_id": str(uuid.UUID(int=0)), "call_control_id": self.call_control_id}
        return [self._message("stop", stop=stop)]

    def marker_played(self, token: str) -> Frame | None:
        return self._message("mark", mark={"name": token})

    def receive(self, frame: Frame) -> list[Reaction]:
        if isinstance(frame, bytes):
            return [_invalid("a binary frame (Telnyx takes JSON text frames)")]
        try:
            message = parse_event(frame, _SERVER, SERVER_EVENTS)
        except InvalidMessageError as exc:
            return [_invalid(str(exc))]
        match message:
            case ServerMedia(media=media):
                return [self._play(media.payload)]
            case ServerMark(mark=mark):
                return [PlayMarker(mark.name)]
            case ServerClear():
                return [Clear()]

    def _play(self, payload: str) -> Reaction:
        try:
            data = base64.b64decode(payload, validate=True)
        except binascii.Error:
            return _invalid("media payload is not base64")
        fmt = self._format
        if len(data) % fmt.frame_bytes or not FRAME_MS / 1000 <= fmt.duration(data) <= MAX_MEDIA_S:
            return _invalid(f"media of {len(data)} bytes is not 20 ms to 30 s of {fmt}")
        return Play(swap16(data) if self.encoding == "L16" else data)

    def _message(self, event: str, **body: object) -> str:
        """Every message but `connected`: numbered, and stamped with the stream's id."""
        message = {"event": event, "sequence_number": str(next(self._sequence)), **body}
        message["stream_id"] = self.stream_id
        return json.dumps(message)


def _invalid(problem: str) -> Heard:
    return Heard("error", f"Telnyx would not play this: {problem}")
