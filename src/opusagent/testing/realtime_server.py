"""A Realtime server for tests: the OpenAI Realtime protocol (GA) on loopback, backed by our own
offline stack, so it really listens and speaks.

    async with RealtimeTestServer(ModelVoice(vad, stt, tts)) as server:
        endpoint = RealtimeEndpoint(server.url, "gpt-realtime")
        ...
    server.received("conversation.item.truncate")   # what clients sent, in order

Per connection (one session each, `server.sessions`):

- `session.created` first; `session.update` (GA shape, validated strictly: flat beta fields such
  as `input_audio_format` are "Unknown parameter" errors) merges into the session and answers
  `session.updated`. The voice cannot change once the session has produced audio.
- `input_audio_buffer.append` (base64 in the session's input format) is converted once, streaming,
  to the VAD's rate. With `turn_detection` `server_vad`, our VAD and turn detector (threshold and
  `silence_duration_ms` from the session) give `input_audio_buffer.speech_started` /
  `speech_stopped` (input-buffer milliseconds), `input_audio_buffer.committed` and the user item
  (`conversation.item.added`); with `transcription` set, our STT's final result gives
  `conversation.item.input_audio_transcription.completed`. The transcription `prompt`, read as a
  comma-separated list of phrases, is the recogniser's grammar hint. `create_response` starts a
  response after the transcript; `interrupt_response` cancels an active one on speech
  (`response.done` status `cancelled`, reason `turn_detected`).
- `response.create` (one active response at a time, else an error): the response's events in GA
  order (`response.created`, `response.output_item.added`, `conversation.item.added`,
  `response.content_part.added`, `response.output_audio_transcript.delta` and
  `response.output_audio.delta` in the session's output format, the `.done` events,
  `conversation.item.done`, `response.done`).
- `conversation.item.create` (messages, `function_call_output` for a known `call_id`),
  `conversation.item.truncate` (assistant audio only, `audio_end_ms` not past the audio sent:
  `conversation.item.truncated`), `conversation.item.delete`, `input_audio_buffer.clear` /
  `commit`, `response.cancel`.
- Anything malformed (not JSON, an unknown type, missing or unknown fields) gets an `error`
  (`invalid_request_error`, with the client's `event_id`), and the session goes on. The error
  codes are this server's own; the service's exact codes are not documented in CATALOG §6.
- `max_session_s` ends a session as the service does at its maximum duration: an `error`
  (code `session_expired`), then the socket closes.

What the model says (`model_turn`) is derived from its instructions (the response's, else the
session's): the text after `Say:` on the last line that starts with it (all the instructions
when no line does). A line `Call: <tool> <JSON arguments>` naming an offered tool makes the model
call it first, once per caller turn; after its output is in the conversation, the next response
speaks. Its voice is the TTS given (no TTS: the transcript events without audio).

`replay` sends recorded event sequences in the documented shapes (GA or beta names, sent as
given): each `ReplayStep` fires once, when the first client event of type `after` arrives
("" = on connecting, after `session.created`), and stands in for the server's own answer to that
event (which is validated and recorded, not otherwise acted on).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import json
import logging
import uuid
from collections import deque
from collections.abc import AsyncIterator, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.audio.resample import AudioConverter
from opusagent.call.stages import STT, TTS, VAD, STTStream, VADStream
from opusagent.call.turn_policy import TurnPolicy
from opusagent.call.turns import TurnDetector, VoiceChange
from opusagent.realtime.events import (
    AudioAppend,
    AudioClear,
    AudioCommit,
    ItemCreate,
    ItemDelete,
    ItemTruncate,
    RealtimeProtocolError,
    ResponseCancel,
    ResponseCreate,
    SessionUpdate,
    json_event,
    parse_client_event,
)
from opusagent.realtime.formats import parse_format
from opusagent.realtime.instructions import CALL, SAY

log = logging.getLogger(__name__)

PATH = "/v1/realtime"
DEFAULT_MODEL = "gpt-realtime"
_CLOSE: dict[str, Any] = {"type": "close"}
"""Put in a session's outbox: close the socket once what precedes it is sent."""


@dataclass(frozen=True, slots=True)
class ModelVoice:
    """The stages the server listens and speaks with."""

    vad: VAD
    stt: STT
    tts: TTS


@dataclass(frozen=True, slots=True)
class Connection:
    """A client's upgrade request: its path (with the query) and headers (lower-case names)."""

    path: str
    headers: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ReplayStep:
    """Events to send once the first client event of type `after` arrives ("" on connecting)."""

    after: str
    events: Sequence[Mapping[str, Any]]


@dataclass(frozen=True, slots=True)
class Speak:
    text: str


@dataclass(frozen=True, slots=True)
class CallTool:
    name: str
    arguments: str


def model_turn(
    instructions: str, tools: Sequence[str], items: Sequence[Mapping[str, Any]]
) -> Speak | CallTool:
    """What the model does next: call a tool its instructions ask for (once per caller turn),
    else speak the last `Say:` line (or all of its instructions)."""
    since_user = list(items)
    for index in range(len(items) - 1, -1, -1):
        if items[index].get("role") == "user":
            since_user = list(items[index + 1 :])
            break
    called = {item.get("name") for item in since_user if item.get("type") == "function_call"}
    lines = [line.strip() for line in instructions.splitlines()]
    for line in lines:
        if line.startswith(CALL):
            name, _, arguments = line[len(CALL) :].strip().partition(" ")
            if name in tools and name not in called:
                return CallTool(name, arguments.strip() or "{}")
    said = [line[len(SAY) :].strip() for line in lines if line.startswith(SAY)]
    return Speak(said[-1] if said else instructions.strip())


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:20]}"


def _default_session(model: str) -> dict[str, Any]:
    """The service's defaults (CATALOG §6.2): PCM16 24 kHz both ways, server VAD with automatic
    responses, no transcription."""
    pcm = {"type": "audio/pcm", "rate": 24000}
    return {
        "type": "realtime",
        "object": "realtime.session",
        "id": _id("sess"),
        "model": model,
        "output_modalities": ["audio"],
        "instructions": "",
        "tools": [],
        "tool_choice": "auto",
        "audio": {
            "input": {
                "format": dict(pcm),
                "transcription": None,
                "noise_reduction": None,
                "turn_detection": {
                    "type": "server_vad",
                    "threshold": 0.5,
                    "prefix_padding_ms": 300,
                    "silence_duration_ms": 500,
                    "create_response": True,
                    "interrupt_response": True,
                },
            },
            "output": {"format": dict(pcm), "voice": "alloy", "speed": 1.0},
        },
    }


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Lay `update` over `base` in place: mappings key by key, anything else replaced."""
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = json.loads(json.dumps(value))


class _Error(Exception):
    def __init__(self, message: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.param = param


@dataclass(slots=True)
class _Response:
    id: str
    task: asyncio.Task[None] | None = None
    output: list[dict[str, Any]] = field(default_factory=list)


class ServerSession:
    """One client connection's Realtime session."""

    def __init__(self, server: RealtimeTestServer, ws: ServerConnection, model: str) -> None:
        self._server = server
        self._ws = ws
        self.session = _default_session(model)
        self.items: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        """Every client event that was valid JSON, in order (invalid ones included)."""
        self.sent: list[dict[str, Any]] = []
        self.input_ms = 0.0
        """Milliseconds of audio appended to the input buffer so far."""
        self._audio_ms: dict[str, float] = {}
        self._voice = server.voice
        self._outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._replay = list(server.replay)
        self._response: _Response | None = None
        self._produced_audio = False
        self._listen: AudioConverter | None = None
        self._input_format = parse_format(self.session["audio"]["input"]["format"])
        self._detector: TurnDetector | None = None
        self._vad: VADStream | None = None
        self._stt: STTStream | None = None
        self._speech_item = ""
        self._awaiting_transcript: deque[str] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._configure_input()

    # --- running ---------------------------------------------------------------------------

    async def run(self) -> None:
        writer = asyncio.create_task(self._run_writer())
        expiry = None
        if self._server.max_session_s is not None:
            expiry = asyncio.get_running_loop().call_later(self._server.max_session_s, self._expire)
        self._emit({"type": "session.created", "session": self.session})
        self._fire_replay("")
        try:
            async for frame in self._ws:
                self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            if expiry is not None:
                expiry.cancel()
            await self._close_stages()
            self._outbox.put_nowait(None)
            await writer

    def _on_frame(self, frame: str | bytes) -> None:
        client_event_id = None
        try:
            raw = json_event(frame)
            self.received.append(raw)
            client_event_id = raw.get("event_id")
            event = parse_client_event(raw)
            if not self._fire_replay(raw["type"]):
                self._handle(event)
        except RealtimeProtocolError as exc:
            self._error(str(exc), "invalid_event", event_id=client_event_id)
        except _Error as exc:
            self._error(str(exc), exc.code, exc.param, client_event_id)

    def _handle(self, event: object) -> None:
        match event:
            case SessionUpdate():
                self._update_session(event)
            case AudioAppend(audio=audio):
                self._append(audio)
            case AudioCommit():
                self._commit()
            case AudioClear():
                self.input_ms = 0.0
                self._emit({"type": "input_audio_buffer.cleared"})
            case ItemCreate(item=item, previous_item_id=previous):
                self._add_item(dict(item), previous)
            case ItemTruncate():
                self._truncate(event)
            case ItemDelete(item_id=item_id):
                item = self._item(item_id)
                self.items.remove(item)
                self._emit({"type": "conversation.item.deleted", "item_id": item_id})
            case ResponseCreate(response=overrides):
                self._create_response(overrides or {})
            case ResponseCancel():
                if self._response is None:
                    raise _Error(
                        "Cancellation failed: no active response found", "no_active_response"
                    )
                self._cancel_response("client_cancelled")

    async def _run_writer(self) -> None:
        while (event := await self._outbox.get()) is not None:
            with contextlib.suppress(ConnectionClosed):
                if event is _CLOSE:
                    await self._ws.close()
                else:
                    await self._ws.send(json.dumps(event))

    def _emit(self, event: dict[str, Any]) -> None:
        event = {"type": event["type"], "event_id": event.get("event_id") or _id("event"), **event}
        self.sent.append(event)
        self._outbox.put_nowait(event)

    def _error(
        self, message: str, code: str, param: str | None = None, event_id: str | None = None
    ) -> None:
        error = {
            "type": "invalid_request_error",
            "code": code,
            "message": message,
            "param": param,
            "event_id": event_id,
        }
        self._emit({"type": "error", "error": error})

    def _fire_replay(self, after: str) -> bool:
        """Send the replay step that follows `after`, if one is left; True when one was."""
        for step in self._replay:
            if step.after == after:
                self._replay.remove(step)
                for event in step.events:
                    self._emit(dict(event))
                return True
        return False

    def _expire(self) -> None:
        minutes = (self._server.max_session_s or 0) / 60
        self._error(
            f"Your session hit the maximum duration of {minutes:g} minutes.", "session_expired"
        )
        self._outbox.put_nowait(_CLOSE)

    # --- the session -----------------------------------------------------------------------

    def _update_session(self, event: SessionUpdate) -> None:
        update = event.session.model_dump(exclude_unset=True)
        voice = update.get("audio", {}).get("output", {}).get("voice")
        current = self.session["audio"]["output"]["voice"]
        if voice is not None and voice != current and self._produced_audio:
            raise _Error(
                "Cannot update a conversation's voice if assistant audio is present.",
                "cannot_update_voice",
                "session.audio.output.voice",
            )
        _merge(self.session, update)
        self._configure_input()
        self._emit({"type": "session.updated", "session": self.session})

    def _configure_input(self) -> None:
        audio_in = self.session["audio"]["input"]
        fmt = parse_format(audio_in["format"])
        voice = self._voice
        if voice is None:
            self._input_format = fmt
            return
        rate = voice.vad.sample_rate
        if self._listen is None or fmt != self._input_format:
            self._listen = AudioConverter(fmt, AudioFormat(Encoding.PCM16, rate))
        self._input_format = fmt
        detection = audio_in.get("turn_detection")
        if detection is not None:
            policy = TurnPolicy(
                speech_threshold=detection.get("threshold") or 0.5,
                end_of_turn_silence_ms=detection.get("silence_duration_ms") or 500,
            )
            speaking = self._detector is not None and self._detector.speaking
            if not speaking:
                self._detector = TurnDetector(policy, voice.vad.window_seconds)
        else:
            self._detector = None
        if self._vad is None:
            self._vad = voice.vad.open_stream(self._on_vad)
        if self._stt is None:
            self._stt = voice.stt.open_stream()
            self._spawn(self._run_transcripts(self._stt))
        transcription = audio_in.get("transcription") or {}
        prompt = transcription.get("prompt") or ""
        phrases = [p.strip() for p in prompt.split(",") if p.strip()]
        self._stt.expect(phrases or None)

    # --- listening ---------------------------------------------------------------------

    def _append(self, audio: str) -> None:
        try:
            data = base64.b64decode(audio, validate=True)
        except binascii.Error:
            raise _Error("Invalid 'audio': not base64.", "invalid_audio", "audio") from None
        self.input_ms += self._input_format.duration(data) * 1000
        if self._listen is None or self._vad is None or self._stt is None:
            return
        samples = self._listen.to_samples(data)
        if len(samples):
            self._vad.push(samples)
            self._stt.push(samples)

    def _on_vad(self, probability: float, stream_time: float) -> None:
        detector = self._detector
        if detector is None or self._stt is None:
            return
        change = detector.update(probability)
        if change is VoiceChange.STARTED:
            self._speech_item = _id("item")
            start_ms = max(0, round((stream_time - detector.voiced_s) * 1000))
            self._emit(
                {
                    "type": "input_audio_buffer.speech_started",
                    "audio_start_ms": start_ms,
                    "item_id": self._speech_item,
                }
            )
            self._stt.speech_started()
            detection = self.session["audio"]["input"]["turn_detection"] or {}
            if self._response is not None and detection.get("interrupt_response", True):
                self._cancel_response("turn_detected")
        elif change is VoiceChange.ENDED:
            end_ms = round((stream_time - detector.trailing_silence_s) * 1000)
            self._emit(
                {
                    "type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": end_ms,
                    "item_id": self._speech_item,
                }
            )
            self._stt.speech_ended()
            self._commit(self._speech_item)

    def _commit(self, item_id: str | None = None) -> None:
        item_id = item_id or _id("item")
        previous = self.items[-1]["id"] if self.items else None
        self._emit(
            {
                "type": "input_audio_buffer.committed",
                "previous_item_id": previous,
                "item_id": item_id,
            }
        )
        item = {
            "id": item_id,
            "type": "message",
            "role": "user",
            "status": "completed",
            "content": [{"type": "input_audio", "transcript": None}],
        }
        self._add_item(item, previous, done=False)
        if self.session["audio"]["input"].get("transcription") and self._voice is not None:
            self._awaiting_transcript.append(item_id)
        else:
            self._maybe_respond()

    async def _run_transcripts(self, stt: STTStream) -> None:
        async for transcript in stt.results():
            if not transcript.final or not self._awaiting_transcript:
                continue
            item_id = self._awaiting_transcript.popleft()
            with contextlib.suppress(_Error):
                self._item(item_id)["content"][0]["transcript"] = transcript.text
            self._emit(
                {
                    "type": "conversation.item.input_audio_transcription.completed",
                    "item_id": item_id,
                    "content_index": 0,
                    "transcript": transcript.text,
                }
            )
            self._maybe_respond()

    def _maybe_respond(self) -> None:
        detection = self.session["audio"]["input"]["turn_detection"] or {}
        if detection.get("create_response", True) and self._response is None:
            self._create_response({})

    # --- the conversation --------------------------------------------------------------

    def _item(self, item_id: str) -> dict[str, Any]:
        for item in self.items:
            if item.get("id") == item_id:
                return item
        raise _Error(f"Item with item_id '{item_id}' not found.", "item_not_found", "item_id")

    def _add_item(
        self, item: dict[str, Any], previous: str | None = None, *, done: bool = True
    ) -> None:
        kind = item.get("type")
        if kind not in ("message", "function_call", "function_call_output"):
            raise _Error(
                f"Invalid value: '{kind}' is not an item type.", "invalid_value", "item.type"
            )
        if kind == "message" and item.get("role") not in ("user", "assistant", "system"):
            raise _Error(
                "A message needs a role: user, assistant or system.", "invalid_value", "item.role"
            )
        if kind == "function_call_output":
            call_id = item.get("call_id")
            known = {i.get("call_id") for i in self.items if i.get("type") == "function_call"}
            if call_id not in known:
                raise _Error(
                    f"Tool call ID '{call_id}' not found in conversation.",
                    "invalid_tool_call_id",
                    "item.call_id",
                )
            if not isinstance(item.get("output"), str):
                raise _Error("'output' must be a string.", "invalid_type", "item.output")
        item.setdefault("id", _id("item"))
        item.setdefault("object", "realtime.item")
        item.setdefault("status", "completed")
        if previous is not None:
            self._item(previous)
        last = self.items[-1]["id"] if self.items else None
        self.items.append(item)
        self._emit({"type": "conversation.item.added", "previous_item_id": last, "item": item})
        if done:
            self._emit({"type": "conversation.item.done", "previous_item_id": last, "item": item})

    def _truncate(self, event: ItemTruncate) -> None:
        item = self._item(event.item_id)
        if item.get("role") != "assistant":
            raise _Error("Only assistant messages can be truncated.", "invalid_value", "item_id")
        if event.content_index != 0:
            raise _Error("Invalid content_index.", "invalid_value", "content_index")
        audio_ms = self._audio_ms.get(event.item_id, 0.0)
        if event.audio_end_ms > audio_ms + 1e-6:
            raise _Error(
                f"audio_end_ms {event.audio_end_ms} is longer than the audio ({audio_ms:.0f} ms).",
                "invalid_value",
                "audio_end_ms",
            )
        self._audio_ms[event.item_id] = float(event.audio_end_ms)
        self._emit(
            {
                "type": "conversation.item.truncated",
                "item_id": event.item_id,
                "content_index": 0,
                "audio_end_ms": event.audio_end_ms,
            }
        )

    # --- responses ---------------------------------------------------------------------

    def _create_response(self, overrides: Mapping[str, Any]) -> None:
        if self._response is not None:
            raise _Error(
                f"Conversation already has an active response in progress: {self._response.id}. "
                "Wait until the response is finished before creating a new one.",
                "conversation_already_has_active_response",
            )
        response = _Response(_id("resp"))
        self._response = response
        response.task = asyncio.get_running_loop().create_task(self._respond(response, overrides))

    def _cancel_response(self, reason: str) -> None:
        response = self._response
        if response is None or response.task is None:
            return
        response.task.cancel()
        self._response = None
        for item in response.output:
            item["status"] = "incomplete"
        self._emit(
            {
                "type": "response.done",
                "response": self._response_object(
                    response, "cancelled", {"type": "cancelled", "reason": reason}
                ),
            }
        )

    def _response_object(
        self, response: _Response, status: str, details: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "id": response.id,
            "object": "realtime.response",
            "status": status,
            "status_details": details,
            "output": list(response.output),
            "usage": None,
        }

    async def _respond(self, response: _Response, overrides: Mapping[str, Any]) -> None:
        self._emit(
            {"type": "response.created", "response": self._response_object(response, "in_progress")}
        )
        instructions = str(overrides.get("instructions", self.session.get("instructions") or ""))
        tools = overrides.get("tools", self.session.get("tools") or [])
        names = [str(tool.get("name")) for tool in tools if isinstance(tool, Mapping)]
        turn = model_turn(instructions, names, self.items)
        try:
            if isinstance(turn, CallTool):
                self._call_tool(response, turn)
            else:
                await self._speak(response, turn.text)
        except asyncio.CancelledError:
            return
        except Exception as exc:
            log.exception("realtime test server: the response failed")
            self._response = None
            self._emit(
                {
                    "type": "response.done",
                    "response": self._response_object(
                        response, "failed", {"type": "failed", "error": str(exc)}
                    ),
                }
            )
            return
        self._response = None
        self._emit(
            {"type": "response.done", "response": self._response_object(response, "completed")}
        )

    def _output_item(self, response: _Response, item: dict[str, Any]) -> dict[str, Any]:
        last = self.items[-1]["id"] if self.items else None
        response.output.append(item)
        self.items.append(item)
        self._emit(
            {
                "type": "response.output_item.added",
                "response_id": response.id,
                "output_index": len(response.output) - 1,
                "item": item,
            }
        )
        self._emit({"type": "conversation.item.added", "previous_item_id": last, "item": item})
        return {
            "response_id": response.id,
            "item_id": item["id"],
            "output_index": len(response.output) - 1,
        }

    def _item_done(self, response: _Response, item: dict[str, Any]) -> None:
        item["status"] = "completed"
        index = response.output.index(item)
        self._emit(
            {
                "type": "response.output_item.done",
                "response_id": response.id,
                "output_index": index,
                "item": item,
            }
        )
        self._emit({"type": "conversation.item.done", "item": item})

    def _call_tool(self, response: _Response, turn: CallTool) -> None:
        item = {
            "id": _id("item"),
            "object": "realtime.item",
            "type": "function_call",
            "status": "in_progress",
            "call_id": _id("call"),
            "name": turn.name,
            "arguments": "",
        }
        where = self._output_item(response, item)
        where["call_id"] = item["call_id"]
        self._emit(
            {"type": "response.function_call_arguments.delta", **where, "delta": turn.arguments}
        )
        item["arguments"] = turn.arguments
        self._emit(
            {
                "type": "response.function_call_arguments.done",
                **where,
                "name": turn.name,
                "arguments": turn.arguments,
            }
        )
        self._item_done(response, item)

    async def _speak(self, response: _Response, text: str) -> None:
        item: dict[str, Any] = {
            "id": _id("item"),
            "object": "realtime.item",
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        where = self._output_item(response, item)
        part = {"type": "audio", "transcript": ""}
        self._emit(
            {"type": "response.content_part.added", **where, "content_index": 0, "part": part}
        )
        self._audio_ms[item["id"]] = 0.0
        transcript = ""
        async for words, audio in self._voice_of(text):
            if words:
                transcript += words
                self._emit(
                    {
                        "type": "response.output_audio_transcript.delta",
                        **where,
                        "content_index": 0,
                        "delta": words,
                    }
                )
            if audio:
                self._send_audio(where, item["id"], audio)
        self._emit({"type": "response.output_audio.done", **where, "content_index": 0})
        self._emit(
            {
                "type": "response.output_audio_transcript.done",
                **where,
                "content_index": 0,
                "transcript": transcript,
            }
        )
        part = {"type": "audio", "transcript": transcript}
        item["content"] = [{"type": "output_audio", "transcript": transcript}]
        self._emit(
            {"type": "response.content_part.done", **where, "content_index": 0, "part": part}
        )
        self._item_done(response, item)

    async def _voice_of(self, text: str) -> AsyncIterator[tuple[str, bytes]]:
        """(words, audio in the output format) as the TTS speaks `text`."""
        voice = self._voice
        if voice is None:
            if text:
                yield text, b""
            return
        output = parse_format(self.session["audio"]["output"]["format"])
        converter = AudioConverter(voice.tts.output_format, output)

        async def one() -> AsyncIterator[str]:
            yield text

        if not text:
            return
        async for chunk in voice.tts.synthesize(one()):
            yield chunk.text, converter.to_bytes(chunk.audio.data)
        yield "", converter.flush_bytes()

    def _send_audio(self, where: Mapping[str, Any], item_id: str, audio: bytes) -> None:
        output = parse_format(self.session["audio"]["output"]["format"])
        size = output.bytes_for(self._server.delta_ms / 1000) or len(audio)
        for start in range(0, len(audio), size):
            piece = audio[start : start + size]
            self._produced_audio = True
            self._audio_ms[item_id] += output.duration(piece) * 1000
            delta = base64.b64encode(piece).decode()
            self._emit(
                {"type": "response.output_audio.delta", **where, "content_index": 0, "delta": delta}
            )

    # --- closing -----------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close_stages(self) -> None:
        if self._response is not None and self._response.task is not None:
            self._response.task.cancel()
        if self._vad is not None:
            self._vad.close()
        if self._stt is not None:
            await self._stt.aclose()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class RealtimeTestServer:
    """The server on a free loopback port while the `async with` block runs."""

    def __init__(
        self,
        voice: ModelVoice | None = None,
        *,
        replay: Sequence[ReplayStep] = (),
        max_session_s: float | None = None,
        delta_ms: int = 100,
    ) -> None:
        self.voice = voice
        self.replay = tuple(replay)
        self.max_session_s = max_session_s
        self.delta_ms = delta_ms
        self.sessions: list[ServerSession] = []
        self.connections: list[Connection] = []
        """The upgrade request of each connection."""
        self._server: Server | None = None

    @property
    def url(self) -> str:
        """The realtime URL, without the model (`ws://127.0.0.1:<port>/v1/realtime`)."""
        assert self._server is not None, "the server is not running"
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}{PATH}"

    def received(self, type_: str | None = None) -> list[dict[str, Any]]:
        """Client events of every session, in order; only those of `type_` when given."""
        events = itertools.chain.from_iterable(s.received for s in self.sessions)
        return [e for e in events if type_ is None or e.get("type") == type_]

    def sent(self, type_: str | None = None) -> list[dict[str, Any]]:
        events = itertools.chain.from_iterable(s.sent for s in self.sessions)
        return [e for e in events if type_ is None or e.get("type") == type_]

    async def __aenter__(self) -> Self:
        self._server = await serve(self._serve, "127.0.0.1", 0, max_size=None, compression=None)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, ws: ServerConnection) -> None:
        request = ws.request
        path = request.path if request is not None else ""
        raw = request.headers.raw_items() if request is not None else []
        headers = {name.lower(): value for name, value in raw}
        self.connections.append(Connection(path, headers))
        model = parse_qs(urlsplit(path).query).get("model", [DEFAULT_MODEL])[0]
        session = ServerSession(self, ws, model)
        self.sessions.append(session)
        await session.run()
