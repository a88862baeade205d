"""OpenAI Realtime events: the server events a call consumes and the client events it sends.

Names and fields follow the GA interface of openai/openai-python (`src/openai/types/realtime/*`,
CATALOG §6). Server events are also understood under their beta names (`response.audio.delta`,
`response.audio_transcript.delta`, `response.text.delta`, `conversation.item.created`, …), which
`parse_server_event` maps to the GA ones; server events this package does not act on parse as
`OtherServerEvent`. Client events are validated as GA, strictly (unknown parameters are errors,
as the service reports "Unknown parameter"), so the Realtime test server can answer a malformed
event with an `error` the way the service does.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

BETA_NAMES: dict[str, str] = {
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "conversation.item.created": "conversation.item.added",
}
"""Beta server event names and the GA name each became (CATALOG §6.3)."""


class RealtimeProtocolError(ValueError):
    """An event that is not valid JSON or lacks what its type requires."""


# --- server events (OpenAI -> us) ----------------------------------------------------------


class _ServerEvent(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: str = ""


class SessionEvent(_ServerEvent):
    """The session as the server now holds it."""

    type: Literal["session.created", "session.updated"]
    session: dict[str, Any]


class SpeechStarted(_ServerEvent):
    """Server VAD heard the caller start; `audio_start_ms` is input-buffer time."""

    type: Literal["input_audio_buffer.speech_started"]
    audio_start_ms: int
    item_id: str = ""


class SpeechStopped(_ServerEvent):
    type: Literal["input_audio_buffer.speech_stopped"]
    audio_end_ms: int
    item_id: str = ""


class TranscriptionDelta(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.delta"]
    item_id: str
    delta: str = ""


class TranscriptionCompleted(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.completed"]
    item_id: str
    content_index: int = 0
    transcript: str


class TranscriptionFailed(_ServerEvent):
    type: Literal["conversation.item.input_audio_transcription.failed"]
    item_id: str
    error: dict[str, Any] = Field(default_factory=dict)


class ResponseCreated(_ServerEvent):
    type: Literal["response.created"]
    response: dict[str, Any]

    @property
    def response_id(self) -> str:
        return str(self.response.get("id", ""))


class OutputItemAdded(_ServerEvent):
    type: Literal["response.output_item.added"]
    response_id: str
    output_index: int = 0
    item: dict[str, Any]


class AudioDelta(_ServerEvent):
    """Base64 audio of an assistant item, in the session's output format."""

    type: Literal["response.output_audio.delta"]
    response_id: str
    item_id: str
    output_index: int = 0
    content_index: int = 0
    delta: str


class AudioTranscriptDelta(_ServerEvent):
    type: Literal["response.output_audio_transcript.delta"]
    response_id: str
    item_id: str
    delta: str


class FunctionCallArgumentsDone(_ServerEvent):
    type: Literal["response.function_call_arguments.done"]
    response_id: str
    item_id: str = ""
    call_id: str
    name: str
    arguments: str


class ResponseDone(_ServerEvent):
    type: Literal["response.done"]
    response: dict[str, Any]

    @property
    def response_id(self) -> str:
        return str(self.response.get("id", ""))

    @property
    def status(self) -> str:
        return str(self.response.get("status", ""))


class ItemTruncated(_ServerEvent):
    type: Literal["conversation.item.truncated"]
    item_id: str
    content_index: int = 0
    audio_end_ms: int


class ErrorEvent(_ServerEvent):
    type: Literal["error"]
    error: dict[str, Any]

    @property
    def code(self) -> str:
        return str(self.error.get("code") or "")

    @property
    def message(self) -> str:
        return str(self.error.get("message") or "")


class OtherServerEvent(_ServerEvent):
    """A server event a call does not act on (e.g. `rate_limits.updated`)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    type: str


KnownServerEvent = Annotated[
    SessionEvent
    | SpeechStarted
    | SpeechStopped
    | TranscriptionDelta
    | TranscriptionCompleted
    | TranscriptionFailed
    | ResponseCreated
    | OutputItemAdded
    | AudioDelta
    | AudioTranscriptDelta
    | FunctionCallArgumentsDone
    | ResponseDone
    | ItemTruncated
    | ErrorEvent,
    Field(discriminator="type"),
]
ServerEvent = KnownServerEvent | OtherServerEvent
_KNOWN: TypeAdapter[KnownServerEvent] = TypeAdapter(KnownServerEvent)
KNOWN_SERVER_EVENTS = frozenset(
    name
    for model in (
        SessionEvent,
        SpeechStarted,
        SpeechStopped,
        TranscriptionDelta,
        TranscriptionCompleted,
        TranscriptionFailed,
        ResponseCreated,
        OutputItemAdded,
        AudioDelta,
        AudioTranscriptDelta,
        FunctionCallArgumentsDone,
        ResponseDone,
        ItemTruncated,
        ErrorEvent,
    )
    for name in get_args(model.model_fields["type"].annotation)
)


def json_event(text: str | bytes) -> dict[str, Any]:
    """The JSON object of one frame, with a string `type`."""
    try:
        raw = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RealtimeProtocolError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise RealtimeProtocolError(f"not a JSON object: {str(text)[:80]!r}")
    if not isinstance(raw.get("type"), str):
        raise RealtimeProtocolError("the event has no 'type'")
    return raw


def parse_server_event(text: str | bytes) -> ServerEvent:
    """One server frame as a typed event; beta names become GA names."""
    raw = json_event(text)
    name = BETA_NAMES.get(raw["type"], raw["type"])
    raw["type"] = name
    if name not in KNOWN_SERVER_EVENTS:
        return OtherServerEvent.model_validate(raw)
    try:
        return _KNOWN.validate_python(raw)
    except ValidationError as exc:
        raise RealtimeProtocolError(f"{name}: {describe(exc, name)}") from None


def describe(exc: ValidationError, tag: str) -> str:
    """`field.path: message; …` without the union tag pydantic puts first."""
    problems = []
    for error in exc.errors():
        loc = error["loc"]
        if loc and str(loc[0]) == tag:
            loc = loc[1:]
        message = "Unknown parameter" if error["type"] == "extra_forbidden" else error["msg"]
        problems.append(f"{'.'.join(str(p) for p in loc) or 'event'}: {message}")
    return "; ".join(problems)


# --- client events (us -> OpenAI), GA ------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FormatSpec(_Strict):
    """A GA audio format: `{"type": "audio/pcm", "rate": 24000}`, `audio/pcmu`, `audio/pcma`."""

    type: Literal["audio/pcm", "audio/pcmu", "audio/pcma"]
    rate: Literal[24000] | None = None


class TranscriptionSpec(_Strict):
    model: str | None = None
    language: str | None = None
    prompt: str | None = None


class TurnDetectionSpec(_Strict):
    type: Literal["server_vad", "semantic_vad"]
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    prefix_padding_ms: int | None = Field(None, ge=0)
    silence_duration_ms: int | None = Field(None, ge=0)
    idle_timeout_ms: int | None = Field(None, ge=0)
    create_response: bool | None = None
    interrupt_response: bool | None = None
    eagerness: Literal["low", "medium", "high", "auto"] | None = None


class AudioInputSpec(_Strict):
    format: FormatSpec | None = None
    transcription: TranscriptionSpec | None = None
    noise_reduction: dict[str, Any] | None = None
    turn_detection: TurnDetectionSpec | None = None


class AudioOutputSpec(_Strict):
    format: FormatSpec | None = None
    voice: str | None = None
    speed: float | None = Field(None, gt=0)


class AudioSpec(_Strict):
    input: AudioInputSpec | None = None
    output: AudioOutputSpec | None = None


class FunctionTool(_Strict):
    type: Literal["function"] = "function"
    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)


class SessionSpec(_Strict):
    """The GA session object of `session.update` (partial updates allowed)."""

    type: Literal["realtime"]
    model: str | None = None
    instructions: str | None = None
    output_modalities: list[Literal["audio", "text"]] | None = None
    audio: AudioSpec | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | Literal["inf"] | None = None
    tracing: Any = None
    truncation: Any = None
    prompt: Any = None
    include: list[str] | None = None


class ClientEventBase(_Strict):
    event_id: str | None = None


class SessionUpdate(ClientEventBase):
    type: Literal["session.update"] = "session.update"
    session: SessionSpec


class AudioAppend(ClientEventBase):
    type: Literal["input_audio_buffer.append"] = "input_audio_buffer.append"
    audio: str


class AudioCommit(ClientEventBase):
    type: Literal["input_audio_buffer.commit"] = "input_audio_buffer.commit"


class AudioClear(ClientEventBase):
    type: Literal["input_audio_buffer.clear"] = "input_audio_buffer.clear"


class ItemCreate(ClientEventBase):
    type: Literal["conversation.item.create"] = "conversation.item.create"
    item: dict[str, Any]
    previous_item_id: str | None = None


class ItemTruncate(ClientEventBase):
    type: Literal["conversation.item.truncate"] = "conversation.item.truncate"
    item_id: str
    content_index: int = Field(ge=0)
    audio_end_ms: int = Field(ge=0)


class ItemDelete(ClientEventBase):
    type: Literal["conversation.item.delete"] = "conversation.item.delete"
    item_id: str


class ResponseCreate(ClientEventBase):
    type: Literal["response.create"] = "response.create"
    response: dict[str, Any] | None = None


class ResponseCancel(ClientEventBase):
    type: Literal["response.cancel"] = "response.cancel"
    response_id: str | None = None


ClientEvent = Annotated[
    SessionUpdate
    | AudioAppend
    | AudioCommit
    | AudioClear
    | ItemCreate
    | ItemTruncate
    | ItemDelete
    | ResponseCreate
    | ResponseCancel,
    Field(discriminator="type"),
]
_CLIENT: TypeAdapter[ClientEvent] = TypeAdapter(ClientEvent)
CLIENT_EVENTS = frozenset(
    {
        "session.update",
        "input_audio_buffer.append",
        "input_audio_buffer.commit",
        "input_audio_buffer.clear",
        "conversation.item.create",
        "conversation.item.truncate",
        "conversation.item.delete",
        "response.create",
        "response.cancel",
    }
)


class UnknownEventError(RealtimeProtocolError):
    """A client event type the interface does not have."""


def parse_client_event(raw: dict[str, Any]) -> ClientEvent:
    """A client event (already read by `json_event`) as its GA model."""
    name = raw["type"]
    if name not in CLIENT_EVENTS:
        raise UnknownEventError(f"Invalid value: {name!r} is not a supported client event type")
    try:
        return _CLIENT.validate_python(raw)
    except ValidationError as exc:
        raise RealtimeProtocolError(f"{name}: {describe(exc, name)}") from None


def dump(event: ClientEventBase) -> str:
    """A client event as the JSON text frame to send (unset optional fields left out)."""
    return event.model_dump_json(exclude_none=True)


def user_text(text: str) -> dict[str, Any]:
    """A user message item carrying text (restoring a conversation on a new session)."""
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


def assistant_text(text: str) -> dict[str, Any]:
    """An assistant message item carrying the words the caller heard (GA content type
    `output_text`, openai-python `realtime_conversation_item_assistant_message.py`)."""
    return {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": text}],
    }


def function_output(call_id: str, output: str) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": call_id, "output": output}
