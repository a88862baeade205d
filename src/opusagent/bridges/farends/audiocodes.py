"""VoiceAI Connect's side of a Bot API streaming conversation (`opusagent.bridges.audiocodes`),
for the dialler.

Facts (CATALOG §3; AudioCodes' SDK https://github.com/audiocodes/ac-bot-api and samples
https://github.com/ac-voice-ai/ac-api-samples):

- VAIC opens the WebSocket with `Authorization: Bearer <token>`, sends `session.initiate` with the
  `supportedMediaFormats` it offers and waits for `session.accepted` (one of them) or
  `session.error`. It then sends the `start` activity and `userStream.start` (acknowledged with
  `userStream.started`), and streams the caller's audio as `userStream.chunk`s in the accepted
  format. Every message to the bot carries `conversationId`.
- A key press is an activity `{"type":"event","name":"DTMF","value":"<digits>"}`; the caller
  hanging up is `session.end` (`reasonCode` "client-disconnected").
- The bot's audio comes as `playStream.start` (its `streamId` and `mediaFormat`), `chunk`s and
  `stop`, one stream at a time; `stop` ends the stream, and what was sent still plays (the SDK
  sends its chunks unpaced, then `stop`). There are no play acknowledgements.
- The bot's `hangup` activity ends the conversation; a `transfer` hands the caller over (this
  far end assumes it succeeds and ends the bot's session: `session.end`, "transferred");
  `sendDtmf` plays digits.

Every message from the server is checked against the bridge's models of the bot's messages and
against this state (a chunk outside its stream, a second open stream, a format not accepted);
a violation is reported as `Heard("error", …)` and the message is otherwise ignored.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from pydantic import ValidationError

from opusagent.audio.formats import AudioFormat
from opusagent.bridges.audiocodes import (
    BOT_MESSAGE,
    DEFAULT_MEDIA_FORMAT,
    DTMF_DIGITS,
    MEDIA_FORMATS,
    EventActivity,
    OutboundActivities,
    PlayStreamChunk,
    PlayStreamStart,
    PlayStreamStop,
    SessionAccepted,
    SessionError,
    SpeechEdge,
    SpeechResult,
)
from opusagent.bridges.farend import Ended, Heard, Play, Reaction, Ready, Send
from opusagent.bridges.session import Frame

FRAME_MS = 20
CALLER_HUNG_UP = "client-disconnected"
TRANSFERRED = "transferred"


class AudioCodesFarEnd:
    """VoiceAI Connect for one conversation (implements `opusagent.bridges.farend.FarEnd`).

    `media_formats` is the `supportedMediaFormats` list it offers, in order of preference; it
    streams and plays in the first of them it knows (`MEDIA_FORMATS`), and a server accepting
    another ends the call. `start_parameters` ride on the `start` activity. With `resume`, it
    reconnects to `conversation_id` as VAIC does after a lost connection: `session.resume`, a
    bare `session.accepted`, then the user stream in the format negotiated before (the first
    of `media_formats`).
    """

    def __init__(
        self,
        media_formats: Sequence[str] = (DEFAULT_MEDIA_FORMAT,),
        *,
        conversation_id: str | None = None,
        caller: str = "+15550100",
        bot_name: str = "opusagent",
        token: str | None = None,
        start_parameters: Mapping[str, str] | None = None,
        resume: bool = False,
    ) -> None:
        known = [name for name in media_formats if name in MEDIA_FORMATS]
        if not known:
            raise ValueError(
                f"none of {list(media_formats)} is a format this far end can stream "
                f"({list(MEDIA_FORMATS)})"
            )
        self.media_formats = list(media_formats)
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self.caller = caller
        self.bot_name = bot_name
        self.start_parameters = dict(start_parameters or {})
        self._token = token
        self._resume = resume
        self._format_name = known[0]
        self.accepted_format: str | None = None
        """The `mediaFormat` of the server's `session.accepted`."""
        self._stream: str | None = None

    @classmethod
    def for_url(cls, url: str, *, token: str | None = None) -> AudioCodesFarEnd:
        """A far end for `opusagent dial` (the `FarEndFactory` shape): VAIC's side needs nothing
        from the URL, only the bearer `token`; it offers the SDK's default format."""
        return cls(token=token)

    def resumed(self) -> AudioCodesFarEnd:
        """VAIC reconnecting to the same conversation with `session.resume`."""
        return AudioCodesFarEnd(
            [self.accepted_format or self._format_name],
            conversation_id=self.conversation_id,
            caller=self.caller,
            bot_name=self.bot_name,
            token=self._token,
            resume=True,
        )

    @property
    def audio_format(self) -> AudioFormat:
        return MEDIA_FORMATS[self._format_name]

    @property
    def frame_ms(self) -> int:
        return FRAME_MS

    @property
    def waits_for_ready(self) -> bool:
        return True  # caller audio only after session.accepted

    def headers(self) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token is not None else {}

    def opening(self) -> list[Frame]:
        if self._resume:
            return [self._message("session.resume")]
        return [
            self._message(
                "session.initiate",
                expectAudioMessages=True,
                supportedMediaFormats=self.media_formats,
                caller=self.caller,
                botName=self.bot_name,
            )
        ]

    def audio(self, data: bytes) -> Frame:
        return self._message("userStream.chunk", audioChunk=base64.b64encode(data).decode())

    def dtmf(self, digit: str) -> list[Frame]:
        if len(digit) != 1 or digit.upper() not in DTMF_DIGITS:
            raise ValueError(f"{digit!r} is not a DTMF key (0-9, *, #, A-D)")
        return [self._activity("DTMF", value=digit.upper())]

    def hangup(self) -> list[Frame]:
        return [self._end(CALLER_HUNG_UP, "Client Side")]

    def marker_played(self, token: str) -> Frame | None:
        return None  # the Bot API has no play acknowledgements

    def receive(self, frame: Frame) -> list[Reaction]:
        if isinstance(frame, bytes):
            return [_error("a binary frame (the Bot API is JSON text)")]
        try:
            message = BOT_MESSAGE.validate_json(frame)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'message'}: {e['msg']}"
                for e in exc.errors()
            )
            return [_error(f"invalid message {frame[:80]!r}: {problems}")]
        match message:
            case SessionAccepted(media_format=media_format):
                return self._accepted(media_format)
            case SessionError(reason=reason):
                return [Heard("error", reason), Ended(f"session.error: {reason}")]
            case SpeechEdge(type=kind):
                return [Heard("speech", kind.rsplit(".", 1)[1])]
            case SpeechResult(type=kind, alternatives=alternatives):
                best = alternatives[0] if alternatives else None
                if best is None:
                    return [_error(f"{kind} without alternatives")]
                final = kind.endswith("recognition")
                return [
                    Heard("transcript", best.text, {"final": final, "confidence": best.confidence})
                ]
            case PlayStreamStart(stream_id=stream_id, media_format=media_format):
                return self._play_start(stream_id, media_format)
            case PlayStreamChunk(stream_id=stream_id, audio_chunk=audio):
                return self._play_chunk(stream_id, audio)
            case PlayStreamStop(stream_id=stream_id):
                if stream_id != self._stream:
                    return [_error(f"playStream.stop of {stream_id}, open: {self._stream}")]
                self._stream = None
                return []
            case OutboundActivities(activities=activities):
                return [r for activity in activities for r in self._bot_activity(activity)]
            case _:
                return []  # acknowledgements of the user stream; connection.validated

    def _accepted(self, media_format: str | None) -> list[Reaction]:
        if self._resume and self.accepted_format is None:
            if media_format is not None:
                return [_error(f"session.accepted of a resume names a format: {media_format}")]
            self.accepted_format = self._format_name
            return [Send(self._message("userStream.start")), Ready()]
        if self.accepted_format is not None:
            return [] if media_format is None else [_error("session.accepted twice")]
        if media_format not in self.media_formats:
            problem = f"session.accepted with mediaFormat {media_format!r}, not one offered"
            return [_error(problem), Ended(problem)]
        if media_format != self._format_name:
            problem = f"session.accepted {media_format!r}; this far end streams {self._format_name}"
            return [_error(problem), Ended(problem)]
        self.accepted_format = media_format
        start = self._activity("start", parameters=self.start_parameters)
        return [Send(start), Send(self._message("userStream.start")), Ready()]

    def _play_start(self, stream_id: str, media_format: str) -> list[Reaction]:
        if self._stream is not None:
            return [_error(f"playStream.start of {stream_id} while {self._stream} is open")]
        if media_format != self.accepted_format:
            return [_error(f"playStream {stream_id} in {media_format}, not {self.accepted_format}")]
        self._stream = stream_id
        return []

    def _play_chunk(self, stream_id: str, audio: str) -> list[Reaction]:
        if stream_id != self._stream:
            return [_error(f"playStream.chunk of {stream_id}, open: {self._stream}")]
        try:
            return [Play(base64.b64decode(audio, validate=True))]
        except binascii.Error:
            return [_error(f"playStream.chunk of {stream_id} is not base64")]

    def _bot_activity(self, activity: EventActivity) -> list[Reaction]:
        name, params = activity.name, activity.activity_params
        if name == "hangup":
            # VAIC would answer `session.end` ("bot-disconnected"), but the server closes the
            # socket as soon as its call has ended, so there is no one to tell.
            reason = params.get("hangupReason", "")
            return [Heard("hangup", reason), Ended(f"hangup: {reason}" if reason else "hangup")]
        if name == "transfer":
            target = params.get("transferTarget", "")
            return [
                Heard("transfer", target, dict(params)),
                Send(self._end(TRANSFERRED, f"transferred to {target}")),
                Ended(f"transferred to {target}"),
            ]
        return [Heard("dtmf", params.get("dtmfDigits", ""))]  # sendDtmf

    def _activity(self, name: str, **fields: object) -> str:
        activity = {
            "type": "event",
            "name": name,
            **fields,
            "id": str(uuid.uuid4()),
            "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        }
        return self._message("activities", activities=[activity])

    def _end(self, reason_code: str, reason: str) -> str:
        return self._message("session.end", reasonCode=reason_code, reason=reason)

    def _message(self, kind: str, **fields: object) -> str:
        return json.dumps({"type": kind, "conversationId": self.conversation_id, **fields})


def _error(problem: str) -> Heard:
    return Heard("error", problem)
