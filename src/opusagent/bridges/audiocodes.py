"""AudioCodes VoiceAI Connect Bot API, streaming (WebSocket) mode: messages, translation, route.

Protocol facts come from AudioCodes' documentation and its own SDK and samples:

- streaming mode: https://techdocs.audiocodes.com/voice-ai-connect/Content/Bot-API/ac-bot-api-streaming.htm
- message names and fields: https://github.com/audiocodes/ac-bot-api (`src/websocket/types.ts`,
  `bot-conversation.ts`, `bot-api.ts`, v0.13.0)
- flow: https://github.com/ac-voice-ai/ac-api-samples (`ac-bot-api/src/*.ts`)
- activities (DTMF, transfer, hang-up, send DTMF): the VoiceAI Connect feature pages under
  https://techdocs.audiocodes.com/voice-ai-connect/

VoiceAI Connect (VAIC) opens one WebSocket per conversation, with `Authorization: Bearer
<token>`, and every message is JSON text with a `type`; every message to the bot carries
`conversationId`. Route: `WS /audiocodes`.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter

from opusagent.audio.formats import (
    MULAW_8K,
    PCM16_8K,
    PCM16_16K,
    PCM16_24K,
    AudioChunk,
    AudioFormat,
)
from opusagent.bridges.auth import admit
from opusagent.bridges.json_frames import base64_audio, parse_event
from opusagent.bridges.session import (
    Await,
    CallFactory,
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
    CallerAudio,
    CallerHungUp,
    CallerSpeech,
    CallerTranscript,
    CallMedia,
    CallOutput,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    ProviderError,
    ReplyAudioEnd,
    SendDtmf,
    Transfer,
)

log = logging.getLogger(__name__)

KnownConversation = Callable[[str], Awaitable[AudioFormat | None]]
"""The audio format a conversation was negotiated in, if the session store holds it."""

PATH = "/audiocodes"

MEDIA_FORMATS: Mapping[str, AudioFormat] = {
    "raw/lpcm16": PCM16_16K,
    "raw/lpcm16_8": PCM16_8K,
    "raw/lpcm16_24": PCM16_24K,
    "raw/mulaw": MULAW_8K,
}
"""The `mediaFormat`s this bridge speaks. `raw/lpcm16` (16 kHz) and `raw/lpcm16_24` are the SDK's
`MediaFormat` enum; `raw/lpcm16_8` and `raw/mulaw` (8 kHz) are listed by
deepgram/deepgram-audiocodes-bridge (Rasa's AudioCodes channel requires `raw/mulaw`). Raw,
headerless, mono; PCM16 taken as little-endian (not documented)."""
DEFAULT_MEDIA_FORMAT = "raw/lpcm16"
"""The SDK's default, accepted by the SDK whatever `supportedMediaFormats` says; assumed when an
initiate lists none."""
MAX_DTMF_DIGITS = 20
"""`sendDtmf` plays at most 20 of `0-9*#` per activity (VoiceAI Connect "Sending DTMF" page)."""
SEND_DTMF_DIGITS = frozenset("0123456789*#")
DTMF_DIGITS = frozenset("0123456789*#ABCD")

# --- messages VAIC -> bot ------------------------------------------------------------------
# Names and fields from the SDK's `VaicToBotMessageName` and `ProtocolMessage`; fields the bridge
# does not use are optional and unknown extra fields are ignored.


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class _ToBot(_Inbound):
    conversation_id: str = Field(alias="conversationId", min_length=1)


class SessionInitiate(_ToBot):
    """Opens the conversation; answered by `session.accepted` or `session.error`."""

    type: Literal["session.initiate"]
    expect_audio_messages: bool | None = Field(None, alias="expectAudioMessages")
    supported_media_formats: list[str] = Field(
        default_factory=lambda: [DEFAULT_MEDIA_FORMAT], alias="supportedMediaFormats"
    )
    caller: str | None = None
    bot_name: str | None = Field(None, alias="botName")
    participant: str | None = None


class SessionResume(_ToBot):
    """VAIC reconnects after losing the connection and asks for the same conversation."""

    type: Literal["session.resume"]


class UserStreamStart(_ToBot):
    type: Literal["userStream.start"]
    participant: str | None = None


class UserStreamChunk(_ToBot):
    type: Literal["userStream.chunk"]
    audio_chunk: str = Field(alias="audioChunk")
    """Base64 of raw audio in the accepted `mediaFormat`; any size."""
    participant: str | None = None


class UserStreamStop(_ToBot):
    type: Literal["userStream.stop"]
    participant: str | None = None


class Activity(_Inbound):
    """`{type: "event"|"message", name?, text?, value?, parameters?, ...}` (SDK `BaseActivity`)."""

    type: str
    name: str | None = None
    text: str | None = None
    value: JsonValue = None
    parameters: dict[str, JsonValue] | None = None


class ActivitiesMessage(_ToBot):
    type: Literal["activities"]
    activities: list[Activity]


class SessionEnd(_ToBot):
    """The conversation is over (caller hung up, bot hung up, transferred, error...).

    `reasonCode`/`reason` are the call-disconnect page's field names; that streaming mode sends
    them is not confirmed."""

    type: Literal["session.end"]
    reason_code: str | None = Field(None, alias="reasonCode")
    reason: str | None = None


class ConnectionValidate(_Inbound):
    """Sent when the bot connection is validated in the portal; not part of a call."""

    type: Literal["connection.validate"]
    conversation_id: str | None = Field(None, alias="conversationId")


ConversationMessage = (
    UserStreamStart | UserStreamChunk | UserStreamStop | ActivitiesMessage | SessionEnd
)
"""The messages that belong to an accepted conversation."""
InboundMessage = Annotated[
    SessionInitiate | SessionResume | ConversationMessage | ConnectionValidate,
    Field(discriminator="type"),
]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
INBOUND_TYPES = frozenset(
    {
        "session.initiate",
        "session.resume",
        "userStream.start",
        "userStream.chunk",
        "userStream.stop",
        "activities",
        "session.end",
        "connection.validate",
    }
)

# --- messages bot -> VAIC ------------------------------------------------------------------
# The SDK's `BotToVaicMessageName`, with exactly the fields the SDK sends (unset optional fields
# are left out of the JSON).


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def wire(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class SessionAccepted(_Outbound):
    """Answer to `session.initiate` (with the chosen `mediaFormat`) or `session.resume` (bare)."""

    type: Literal["session.accepted"] = "session.accepted"
    media_format: str | None = Field(None, alias="mediaFormat")


class SessionError(_Outbound):
    """Refuses an initiate or a resume (the SDK's reason for an unknown conversation is
    `"conversation not found"`)."""

    type: Literal["session.error"] = "session.error"
    conversation_id: str = Field(alias="conversationId")
    reason: str


class UserStreamAck(_Outbound):
    """`userStream.started` / `userStream.stopped`: acknowledges VAIC's start / stop."""

    type: Literal["userStream.started", "userStream.stopped"]
    participant: str | None = None


class SpeechEdge(_Outbound):
    """Our VAD heard the caller start / stop speaking."""

    type: Literal["userStream.speech.started", "userStream.speech.stopped"]
    participant: str | None = None


class Alternative(_Outbound):
    text: str
    confidence: float | None = None


class SpeechResult(_Outbound):
    """A partial (`hypothesis`, which VAIC uses for barge-in) or final (`recognition`, after
    which VAIC may stop the user stream) transcript: `alternatives: [{text, confidence?}]`."""

    type: Literal["userStream.speech.hypothesis", "userStream.speech.recognition"]
    participant: str | None = None
    alternatives: list[Alternative]


class PlayStreamStart(_Outbound):
    type: Literal["playStream.start"] = "playStream.start"
    stream_id: str = Field(alias="streamId")
    media_format: str = Field(alias="mediaFormat")


class PlayStreamChunk(_Outbound):
    type: Literal["playStream.chunk"] = "playStream.chunk"
    stream_id: str = Field(alias="streamId")
    audio_chunk: str = Field(alias="audioChunk")


class PlayStreamStop(_Outbound):
    """Ends one play stream: after its last chunk, or to cut it on barge-in."""

    type: Literal["playStream.stop"] = "playStream.stop"
    stream_id: str = Field(alias="streamId")


class EventActivity(_Outbound):
    """A control event to VAIC. `id` and `timestamp` are optional in the SDK's `BaseActivity`;
    AudioCodes' own mock bot sets both on every activity, and so do we."""

    type: Literal["event"] = "event"
    name: Literal["hangup", "transfer", "sendDtmf"]
    activity_params: dict[str, str] = Field(alias="activityParams")
    id: str = Field(default_factory=lambda: str(uuid.uuid4()))
    timestamp: str = Field(
        default_factory=lambda: datetime.now(UTC).isoformat(timespec="milliseconds")
    )


class OutboundActivities(_Outbound):
    type: Literal["activities"] = "activities"
    activities: list[EventActivity]


class ConnectionValidated(_Outbound):
    type: Literal["connection.validated"] = "connection.validated"
    success: bool = True


BotMessage = Annotated[
    SessionAccepted
    | SessionError
    | UserStreamAck
    | SpeechEdge
    | SpeechResult
    | PlayStreamStart
    | PlayStreamChunk
    | PlayStreamStop
    | OutboundActivities
    | ConnectionValidated,
    Field(discriminator="type"),
]
"""Every message this bot sends, for a far end to check what it receives."""
BOT_MESSAGE: TypeAdapter[BotMessage] = TypeAdapter(BotMessage)


# --- translation ---------------------------------------------------------------------------


@dataclass(slots=True)
class _PlayStream:
    stream_id: str
    generation: int


class AudioCodesTranslator:
    """Bot API messages to `CallEvent`s and `CallOutput`s to messages, for one conversation.

    `session.initiate` is accepted in the first offered format this bridge speaks (VAIC's order
    is its preference), or refused with `session.error` and the socket closes. The call starts
    on VAIC's `start` activity (where the SDK sample plays its welcome), or on
    `userStream.start` if that comes first. Caller audio is taken only inside a user stream and
    `userStream.speech.*` are sent only while one is open. Each reply's audio is one play
    stream; a new generation, a barge-in or an outbound activity closes the open one first.
    """

    def __init__(self, known: KnownConversation | None = None) -> None:
        self._known = known
        self._conversation_id: str | None = None
        self._format_name = ""
        self._format: AudioFormat | None = None
        self._params: dict[str, str] = {}
        self._call_started = False
        self._user_stream = False
        self._participant: str | None = None
        self._play: _PlayStream | None = None
        self._streams = 0

    @property
    def conversation_id(self) -> str | None:
        return self._conversation_id

    def inbound(self, frame: Frame) -> Inbound | list[Inbound] | None:
        if isinstance(frame, bytes):
            raise InvalidMessageError("binary frame; the Bot API sends JSON text only")
        message = _parse(frame)
        match message:
            case ConnectionValidate():
                return Reply(ConnectionValidated().wire())
            case SessionInitiate():
                return self._on_initiate(message)
            case SessionResume(conversation_id=conversation_id):
                if self._known is not None and self._conversation_id is None:
                    known = self._known
                    return Await(
                        f"resume {conversation_id}",
                        lambda: self._resume_known(conversation_id, known),
                    )
                return Reply(self._resume(conversation_id))
            case _:
                return self._in_conversation(message)

    def _in_conversation(self, message: ConversationMessage) -> Inbound | list[Inbound]:
        if self._conversation_id is None:
            raise InvalidMessageError(f"{message.type} before session.initiate")
        if message.conversation_id != self._conversation_id:
            raise InvalidMessageError(
                f"{message.type} for conversation {message.conversation_id}, "
                f"not {self._conversation_id}"
            )
        match message:
            case UserStreamStart(participant=participant):
                self._user_stream = True
                self._participant = participant
                ack = UserStreamAck(type="userStream.started", participant=participant)
                return [Reply(ack.wire()), *self._start_call()]
            case UserStreamChunk(audio_chunk=audio):
                if not self._user_stream or self._format is None:
                    raise InvalidMessageError("userStream.chunk outside a user stream")
                return CallerAudio(AudioChunk(base64_audio(audio, "audioChunk"), self._format))
            case UserStreamStop(participant=participant):
                self._user_stream = False
                return Reply(
                    UserStreamAck(type="userStream.stopped", participant=participant).wire()
                )
            case ActivitiesMessage(activities=activities):
                return [
                    meaning for activity in activities for meaning in self._on_activity(activity)
                ]
            case SessionEnd(reason_code=code):
                return CallerHungUp(f"session.end: {code}" if code else "session.end")

    def _on_initiate(self, message: SessionInitiate) -> Reply:
        if self._conversation_id is not None:
            raise InvalidMessageError(
                f"session.initiate for {message.conversation_id} on the connection of "
                f"conversation {self._conversation_id}"
            )
        offered = message.supported_media_formats
        chosen = next((name for name in offered if name in MEDIA_FORMATS), None)
        if chosen is None:
            reason = f"no supported media format among {offered}; supported: {list(MEDIA_FORMATS)}"
            error = SessionError(conversation_id=message.conversation_id, reason=reason)
            raise StreamRefusedError(reason, reply=error.wire())
        if message.expect_audio_messages is False:
            log.warning(
                "conversation %s: VAIC does not expect audio messages (directTTS off), "
                "but this bot only speaks audio",
                message.conversation_id,
            )
        self._conversation_id = message.conversation_id
        self._format_name = chosen
        self._format = MEDIA_FORMATS[chosen]
        self._params = {
            name: value
            for name, value in (("caller", message.caller), ("botName", message.bot_name))
            if value is not None
        }
        return Reply(SessionAccepted(media_format=chosen).wire())

    def _resume(self, conversation_id: str) -> str:
        """Without a session store only the conversation of this connection is known."""
        if conversation_id == self._conversation_id:
            return SessionAccepted().wire()
        return SessionError(conversation_id=conversation_id, reason="conversation not found").wire()

    async def _resume_known(self, conversation_id: str, known: KnownConversation) -> Reply:
        """A new connection resumes a conversation the session store knows (this or another
        server began it): it continues in the format negotiated then; the call starts with the
        next user stream and the agent carries on where it was."""
        fmt = await known(conversation_id)
        name = next((n for n, f in MEDIA_FORMATS.items() if f == fmt), None)
        if name is None:
            return Reply(self._resume(conversation_id))
        self._conversation_id = conversation_id
        self._format_name = name
        self._format = fmt
        return Reply(SessionAccepted().wire())

    def _start_call(self) -> list[Inbound]:
        if self._call_started:
            return []
        assert self._conversation_id is not None and self._format is not None
        self._call_started = True
        media = CallMedia(inbound=self._format, outbound=self._format, marks=False)
        return [StartCall(self._conversation_id, media, dict(self._params))]

    def _on_activity(self, activity: Activity) -> list[Inbound]:
        kind, name = activity.type.lower(), (activity.name or "").lower()
        if kind == "message":
            log.warning(
                "conversation %s: ignoring a text activity (directSTT is off?)",
                self._conversation_id,
            )
            return []
        if kind != "event":
            log.warning("conversation %s: unknown activity type %r", self._conversation_id, kind)
            return []
        match name:
            case "start":
                self._params.update(_scalars(activity.parameters or {}))
                return self._start_call()
            case "dtmf":
                return _dtmf_events(activity.value, self._conversation_id)
            case "hangup":
                return [CallerHungUp("hangup")]
            case "transferstatus":
                return _transfer_status(activity.value)
        log.debug("conversation %s: event %r needs no action", self._conversation_id, name)
        return []

    def outbound(self, output: CallOutput) -> Outbound | list[Outbound] | None:
        match output:
            case AgentAudio(chunk=chunk, generation=generation):
                return self._audio(chunk, generation)
            case ReplyAudioEnd(generation=generation):
                if self._play is not None and self._play.generation == generation:
                    return self._stop_play()
                return None
            case ClearPlayback():
                return self._stop_play()
            case CallerSpeech(started=started):
                if not self._user_stream:
                    return None
                edge = "userStream.speech.started" if started else "userStream.speech.stopped"
                return SpeechEdge(type=edge, participant=self._participant).wire()
            case CallerTranscript(text=text, final=final, confidence=confidence):
                if not self._user_stream or not text:
                    return None
                kind = "userStream.speech.recognition" if final else "userStream.speech.hypothesis"
                alternative = Alternative(text=text, confidence=confidence if final else None)
                result = SpeechResult(
                    type=kind, participant=self._participant, alternatives=[alternative]
                )
                return result.wire()
            case HangUp(reason=reason):
                return self._activity(
                    EventActivity(name="hangup", activity_params={"hangupReason": reason})
                )
            case Transfer(target=target, reason=reason):
                params = {"transferTarget": target}
                if reason:
                    params["handoverReason"] = reason
                return self._activity(EventActivity(name="transfer", activity_params=params))
            case SendDtmf(digits=digits):
                return self._send_dtmf(digits)
            case _:
                return None  # marks (never asked for: marks=False) and notices VAIC has no use for

    def _audio(self, chunk: AudioChunk, generation: int) -> list[Outbound]:
        if chunk.format != self._format:
            raise ValueError(f"the accepted format is {self._format}, got {chunk.format}")
        frames: list[Outbound] = []
        if self._play is not None and self._play.generation != generation:
            frames.extend(self._stop_play())
        if self._play is None:
            self._streams += 1
            self._play = _PlayStream(f"play-{self._streams}", generation)
            start = PlayStreamStart(stream_id=self._play.stream_id, media_format=self._format_name)
            frames.append(start.wire())
        payload = base64.b64encode(chunk.data).decode()
        frames.append(PlayStreamChunk(stream_id=self._play.stream_id, audio_chunk=payload).wire())
        return frames

    def _stop_play(self) -> list[Outbound]:
        play, self._play = self._play, None
        return [PlayStreamStop(stream_id=play.stream_id).wire()] if play is not None else []

    def _activity(self, *activities: EventActivity) -> list[Outbound]:
        """Control events go out between play streams, never inside one."""
        return [*self._stop_play(), OutboundActivities(activities=list(activities)).wire()]

    def _send_dtmf(self, digits: str) -> list[Outbound] | None:
        if not digits or not set(digits) <= SEND_DTMF_DIGITS:
            log.error(
                "conversation %s: cannot send DTMF %r: VAIC plays only 0-9, * and #",
                self._conversation_id,
                digits,
            )
            return None
        return self._activity(
            *(
                EventActivity(
                    name="sendDtmf",
                    activity_params={"dtmfDigits": digits[i : i + MAX_DTMF_DIGITS]},
                )
                for i in range(0, len(digits), MAX_DTMF_DIGITS)
            )
        )


def _parse(text: str) -> InboundMessage:
    return parse_event(text, _INBOUND, INBOUND_TYPES, key="type")


def _scalars(values: Mapping[str, JsonValue]) -> dict[str, str]:
    """The string, number and boolean entries of a mapping, as strings (call parameters)."""
    return {
        name: value if isinstance(value, str) else json.dumps(value)
        for name, value in values.items()
        if isinstance(value, str | int | float | bool)
    }


def _dtmf_events(value: JsonValue, conversation_id: str | None) -> list[Inbound]:
    """`{"type":"event","name":"DTMF","value":"123"}`: one event per key, in order."""
    digits = str(value).upper() if isinstance(value, str | int) else ""
    if not digits or not set(digits) <= DTMF_DIGITS:
        log.warning("conversation %s: ignoring DTMF with value %r", conversation_id, value)
        return []
    return [DtmfReceived(digit) for digit in digits]


def _transfer_status(value: JsonValue) -> list[Inbound]:
    """`value: {status: "answered"|"failed", reasonCode, reason}`: a failed transfer is reported
    to the call (the caller is still there); an answered one needs nothing."""
    status = value if isinstance(value, dict) else {}
    if status.get("status") != "failed":
        return []
    detail = ", ".join(str(status[key]) for key in ("reasonCode", "reason") if key in status)
    return [ProviderError(f"transfer failed ({detail})" if detail else "transfer failed")]


# --- the route -----------------------------------------------------------------------------


def mount_audiocodes(
    app: FastAPI,
    calls: CallFactory,
    *,
    token: str | None,
    known: KnownConversation | None = None,
) -> None:
    """Serve `WS /audiocodes` on `app`; `calls` builds the Call of each conversation.

    With `token`, connections without `Authorization: Bearer <token>` are refused before the
    upgrade (HTTP 403; the SDK's own server answers 401, either fails VAIC's handshake). With
    `known`, `session.resume` continues conversations the session store holds.
    """

    @app.websocket(PATH)
    async def audiocodes(websocket: WebSocket) -> None:
        if not await admit(websocket, token or None, provider="VoiceAI Connect"):
            return
        translator = AudioCodesTranslator(known)
        reason = await run_session(websocket, translator, calls)
        log.info("conversation %s closed; call end reason: %s", translator.conversation_id, reason)
