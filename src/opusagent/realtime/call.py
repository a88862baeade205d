"""A phone call voiced by a speech-to-speech model (OpenAI Realtime), with the FSA in control.

`RealtimeCall` offers bridges what the pipeline `Call` does (`start`, `handle`, `wait_closed`,
`end_reason`, history, turn records), so every bridge works unchanged. Per call it holds one
Realtime connection (never shared). The caller's audio goes to the model in the bridge's own
format where the model takes it (G.711 for Twilio), otherwise through one streaming converter to
PCM16 24 kHz; the model's audio comes back the same way through the `Playout`.

Rules decide (DESIGN rule 5): automatic responses are off. The model's server VAD and input
transcription find the caller's turn; its transcript becomes the controller's turn; the state
the controller lands in sets the model's `instructions` and `tools` (`session.update`), and only
then does `response.create` let the model speak the decided reply. A function call the model
makes runs through the agent's tool registry (recorded in the turn's audit) and is answered with
`function_call_output` + `response.create`. The reply's actions (transfer, hang-up, DTMF) go to
the bridge once its audio has played.

Barge-in: on `input_audio_buffer.speech_started` while a reply is current, the bridge's playback
is cleared and the model's item truncated (`conversation.item.truncate`) to the milliseconds the
caller heard (acknowledged marks, or the pacer's clock), never more than the model sent.

When the model's socket closes while the call is up (the service ends sessions at a maximum
duration), the call reconnects and restores the context: the session configuration, the state's
instructions and tools, the conversation so far as text items, and a reply it was waiting for.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import json
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.audit import ToolRecord
from opusagent.agent.tools.registry import ToolError
from opusagent.audio.codecs import decode
from opusagent.audio.formats import AudioFormat
from opusagent.audio.quality import QualityMeter
from opusagent.audio.resample import AudioConverter
from opusagent.call.call import CallProgress, SendOutput, TurnRecord
from opusagent.call.events import (
    AgentAction,
    AgentStatus,
    CallerAudio,
    CallerHungUp,
    CallerSpeech,
    CallerTranscript,
    CallEvent,
    CallMedia,
    DtmfReceived,
    HangUp,
    MarkAcknowledged,
    ProviderError,
    ReplyLatency,
    SendDtmf,
    Transfer,
)
from opusagent.call.hangup import aclose, tell_agent_hangup
from opusagent.call.stages import (
    ExpectSpeech,
    HistoryEntry,
    Speaker,
    TurnKind,
    UserTurn,
)
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import RealtimeSettings
from opusagent.realtime.connection import RealtimeConnection, RealtimeEndpoint
from opusagent.realtime.events import (
    AudioAppend,
    AudioDelta,
    AudioInputSpec,
    AudioOutputSpec,
    AudioSpec,
    AudioTranscriptDelta,
    ClientEventBase,
    ErrorEvent,
    FunctionCallArgumentsDone,
    ItemCreate,
    ItemTruncate,
    ResponseCancel,
    ResponseCreate,
    ResponseCreated,
    ResponseDone,
    ServerEvent,
    SessionSpec,
    SessionUpdate,
    SpeechStarted,
    SpeechStopped,
    TranscriptionCompleted,
    TranscriptionDelta,
    TranscriptionFailed,
    TranscriptionSpec,
    TurnDetectionSpec,
    assistant_text,
    function_output,
    user_text,
)
from opusagent.realtime.formats import format_spec, model_format_for
from opusagent.realtime.instructions import state_instructions, state_tools
from opusagent.realtime.playout import Playout

log = logging.getLogger(__name__)

PREFIX_PADDING_MS = 300
"""Audio kept before detected speech (the service's default, CATALOG §6.2)."""
MAX_BUFFERED_APPENDS = 250
"""Caller audio held while the model reconnects: 5 s of 20 ms frames; older audio is dropped."""


@dataclass(frozen=True, slots=True)
class RealtimeOptions:
    """How calls reach and configure the model."""

    endpoint: RealtimeEndpoint
    voice: str = "alloy"
    transcription_model: str = "gpt-4o-transcribe"
    connect_timeout_s: float = 10.0
    reconnect_attempts: int = 3
    mark_every_ms: int = 100


def realtime_options(settings: RealtimeSettings) -> RealtimeOptions:
    endpoint = RealtimeEndpoint(settings.url, settings.model, settings.api_key)
    return RealtimeOptions(
        endpoint, voice=settings.voice, transcription_model=settings.transcription_model
    )


@dataclass(slots=True)
class _Reply:
    """The model's voicing of one decided turn, across the responses it takes (tool calls)."""

    generation: int
    instructions: str
    actions: list[AgentAction]
    response_id: str = ""
    """The response under way ("" until the server announces it)."""
    items: list[tuple[str, float]] = field(default_factory=list)
    """Audio items of the reply in order, with where each starts in the reply (seconds)."""
    item_s: dict[str, float] = field(default_factory=dict)
    """Seconds of audio the model sent for each item."""
    tools: list[asyncio.Task[tuple[str, str]]] = field(default_factory=list)
    generated: bool = False
    """The model has finished the reply (its audio may still be playing)."""


class RealtimeCall(CallProgress):
    """One phone call through a Realtime model; see the module docstring."""

    def __init__(
        self,
        call_id: str,
        media: CallMedia,
        agent: FsaAgent,
        send: SendOutput,
        options: RealtimeOptions,
        *,
        policy: TurnPolicy | None = None,
    ) -> None:
        if media.inbound.channels != 1 or media.outbound.channels != 1:
            raise ValueError(f"calls are mono; got {media.inbound} in, {media.outbound} out")
        self.call_id = call_id
        self.media = media
        self.policy = policy or TurnPolicy()
        self.options = options
        self._agent = agent
        self.model_input = model_format_for(media.inbound)
        self.model_output = model_format_for(media.outbound)
        self._inbound = AudioConverter(media.inbound, self.model_input)
        self._outbound = AudioConverter(self.model_output, media.outbound)
        self._quality = QualityMeter(media.inbound.sample_rate)
        self._playout = Playout(
            call_id,
            media,
            send,
            on_first_audio=self._on_first_audio,
            on_played=self._on_played,
            on_hangup=self._end,
            mark_every_ms=options.mark_every_ms,
        )

        self._generation = 0
        self._reply: _Reply | None = None
        self._history: list[HistoryEntry] = []
        self._turn_records: list[TurnRecord] = []
        self._transcription_prompt = ""
        self.reconnects = 0
        self.truncations: list[ItemTruncate] = []
        """Every truncate sent, in order."""

        self._conn: RealtimeConnection | None = None
        self._connected = asyncio.Event()
        self._outbox: deque[ClientEventBase] = deque()
        self._outbox_wake = asyncio.Event()
        self._appended_s = 0.0
        self._audio_clock_offset = 0.0
        """Clock time minus input-buffer time at the latest append."""
        self._speech_ended_at = 0.0
        self._caller_speaking = False
        self._dtmf = ""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sender: asyncio.Future[None] | None = None
        self._release_task: asyncio.Future[None] | None = None
        self._end_reason: str | None = None
        self._closed = asyncio.Event()

    # --- the surface bridges use (as the pipeline Call's) --------------------------------

    @property
    def agent_speaking(self) -> bool:
        return self._playout.speaking

    async def start(self) -> None:
        """Connect to the model, configure the session, and greet."""
        self._loop = asyncio.get_running_loop()
        self._conn = await RealtimeConnection.open(
            self.options.endpoint, within=self.options.connect_timeout_s
        )
        await self._conn.send(SessionUpdate(session=self._session_config()))
        self._connected.set()
        self._sender = asyncio.ensure_future(self._playout.run())
        self._spawn(self._run_writer())
        self._spawn(self._run_model())
        self._set_timer("max_duration", self.policy.max_call_duration_s, self._on_max_duration)
        self._take_turn(TurnKind.START, input_ended_at=self._now())

    def handle(self, event: CallEvent) -> None:
        """Take one event from the bridge; never blocks."""
        if self._end_reason is not None:
            return
        match event:
            case CallerAudio(chunk=chunk):
                self._on_caller_audio(chunk.data, chunk.format)
            case DtmfReceived(digit=digit):
                self._on_dtmf(digit)
            case MarkAcknowledged(name=name):
                self._playout.mark_acknowledged(name)
            case CallerHungUp(reason=reason):
                self._end(reason)
            case ProviderError(message=message, fatal=fatal):
                log.warning("call %s: provider error: %s", self.call_id, message)
                if fatal:
                    self._end(f"provider_error: {message}")

    # --- caller audio and keys -----------------------------------------------------------

    def _on_caller_audio(self, data: bytes, fmt: AudioFormat) -> None:
        if fmt != self.media.inbound:
            raise ValueError(
                f"call {self.call_id}: caller audio is {fmt}, negotiated {self.media.inbound}"
            )
        self._quality.push(decode(data, self.media.inbound.encoding))
        audio = self._inbound.to_bytes(data)
        if not audio:
            return
        self._appended_s += self.model_input.duration(audio)
        self._audio_clock_offset = self._now() - self._appended_s
        self._queue(AudioAppend(audio=base64.b64encode(audio).decode()))

    def _on_dtmf(self, digit: str) -> None:
        self._cancel_timer("no_input")
        if self.policy.dtmf_interrupts:
            self._barge_in()
        if digit in self.policy.dtmf_terminators:
            self._complete_dtmf()
            return
        self._dtmf += digit
        self._set_timer("dtmf", self.policy.dtmf_inter_digit_ms / 1000, self._complete_dtmf)

    def _complete_dtmf(self) -> None:
        self._cancel_timer("dtmf")
        digits, self._dtmf = self._dtmf, ""
        self._history.append(HistoryEntry(Speaker.CALLER, "", dtmf=digits))
        self._take_turn(TurnKind.DTMF, dtmf=digits, input_ended_at=self._now())

    # --- turns: the controller decides, the model speaks ---------------------------------

    def _take_turn(
        self, kind: TurnKind, *, input_ended_at: float, text: str = "", dtmf: str = ""
    ) -> None:
        self._barge_in()
        self._cancel_timer("no_input")
        self._generation += 1
        gen = self._generation
        self._turn_records.append(TurnRecord(kind, text, dtmf, gen, input_ended_at))
        turn = UserTurn(kind, text, dtmf, tuple(self._history), gen)
        self._spawn(self._decide(turn))

    async def _decide(self, turn: UserTurn) -> None:
        gen = turn.generation
        speech: list[str] = []
        actions: list[AgentAction] = []
        parts = self._agent.respond(turn)
        try:
            async for part in parts:
                if gen != self._generation:
                    return
                if isinstance(part, str):
                    speech.append(part)
                elif isinstance(part, AgentStatus):
                    self._playout.notify(part)
                elif isinstance(part, ExpectSpeech):
                    self._transcription_prompt = ", ".join(part.phrases or ())
                else:
                    actions.append(part)
        except Exception:
            log.exception("call %s: the agent failed on turn %d", self.call_id, gen)
            return
        finally:
            await aclose(parts)
        if gen != self._generation or self._end_reason is not None:
            return
        text = " ".join(" ".join(speech).split())
        state = self._agent.state.state
        spec = self._agent.controller.spec
        instructions = state_instructions(spec, state, text)
        self._queue(SessionUpdate(session=self._state_config(instructions, state)))
        if not text:
            self._playout.act(actions)
            self._on_played(gen, "")
            return
        self._reply = _Reply(gen, instructions, actions)
        self._playout.begin(gen)
        self._queue(ResponseCreate())

    def _state_config(self, instructions: str, state: str) -> SessionSpec:
        spec = self._agent.controller.spec
        tools = state_tools(spec, self._agent.controller.tools, state)
        return SessionSpec(
            type="realtime",
            instructions=instructions,
            tools=tools,
            tool_choice="auto",
            audio=AudioSpec(input=AudioInputSpec(transcription=self._transcription())),
        )

    def _transcription(self) -> TranscriptionSpec:
        language = self._agent.controller.spec.language.split("-")[0]
        return TranscriptionSpec(
            model=self.options.transcription_model,
            language=language,
            prompt=self._transcription_prompt or None,
        )

    def _session_config(self) -> SessionSpec:
        """The whole session: formats, server VAD without automatic responses, voice."""
        return SessionSpec(
            type="realtime",
            model=self.options.endpoint.model,
            output_modalities=["audio"],
            audio=AudioSpec(
                input=AudioInputSpec(
                    format=format_spec(self.model_input),
                    transcription=self._transcription(),
                    turn_detection=TurnDetectionSpec(
                        type="server_vad",
                        threshold=self.policy.speech_threshold,
                        prefix_padding_ms=PREFIX_PADDING_MS,
                        silence_duration_ms=self.policy.end_of_turn_silence_ms,
                        create_response=False,
                        interrupt_response=True,
                    ),
                ),
                output=AudioOutputSpec(
                    format=format_spec(self.model_output), voice=self.options.voice
                ),
            ),
        )

    # --- the model's events --------------------------------------------------------------

    async def _run_model(self) -> None:
        while self._end_reason is None:
            conn = self._conn
            assert conn is not None
            async for event in conn.events():
                if self._end_reason is not None:
                    return
                try:
                    self._on_model_event(event)
                except Exception:
                    log.exception("call %s: failed on the model's %s", self.call_id, event.type)
            if self._end_reason is not None:
                return
            log.warning(
                "call %s: the model's session closed (%s); reconnecting",
                self.call_id,
                conn.closed_because,
            )
            if not await self._reconnect():
                self._end("realtime_unavailable")
                return

    def _on_model_event(self, event: ServerEvent) -> None:
        match event:
            case SpeechStarted():
                self._caller_speaking = True
                self._cancel_timer("no_input")
                self._playout.notify(CallerSpeech(started=True))
                self._barge_in(cancelled_by_server=True)
            case SpeechStopped(audio_end_ms=end_ms):
                self._caller_speaking = False
                self._speech_ended_at = end_ms / 1000 + self._audio_clock_offset
                self._playout.notify(CallerSpeech(started=False))
            case TranscriptionDelta(delta=delta) if delta.strip():
                self._playout.notify(CallerTranscript(delta.strip(), final=False))
            case TranscriptionCompleted(transcript=transcript):
                self._on_transcript(transcript.strip())
            case TranscriptionFailed(error=error):
                log.warning("call %s: transcription failed: %s", self.call_id, error)
                self._arm_no_input()
            case ResponseCreated():
                reply = self._reply
                if reply is not None and not reply.response_id:
                    reply.response_id = event.response_id
            case AudioDelta():
                self._on_audio_delta(event)
            case AudioTranscriptDelta(response_id=rid, delta=delta):
                reply = self._current(rid)
                if reply is not None:
                    self._playout.text(reply.generation, delta)
            case FunctionCallArgumentsDone():
                reply = self._current(event.response_id)
                if reply is not None:
                    reply.tools.append(asyncio.ensure_future(self._run_tool(event)))
            case ResponseDone():
                self._on_response_done(event)
            case ErrorEvent():
                log.warning(
                    "call %s: the model reported an error: %s (%s)",
                    self.call_id,
                    event.message,
                    event.code,
                )
            case _:
                pass

    def _current(self, response_id: str) -> _Reply | None:
        reply = self._reply
        if reply is None or reply.response_id != response_id:
            return None
        return reply if reply.generation == self._generation else None

    def _on_transcript(self, text: str) -> None:
        if text:
            self._playout.notify(CallerTranscript(text, final=True))
        if not text:
            self._arm_no_input()
            return
        self._history.append(HistoryEntry(Speaker.CALLER, text))
        self._take_turn(TurnKind.SPEECH, text=text, input_ended_at=self._speech_ended_at)

    def _on_audio_delta(self, event: AudioDelta) -> None:
        reply = self._current(event.response_id)
        if reply is None:
            return
        try:
            audio = base64.b64decode(event.delta, validate=True)
        except binascii.Error:
            log.warning("call %s: an audio delta that is not base64", self.call_id)
            return
        if event.item_id not in reply.item_s:
            start = sum(reply.item_s.values())
            reply.items.append((event.item_id, start))
            reply.item_s[event.item_id] = 0.0
        reply.item_s[event.item_id] += self.model_output.duration(audio)
        self._playout.audio(reply.generation, self._outbound.to_bytes(audio))

    def _on_response_done(self, event: ResponseDone) -> None:
        reply = self._current(event.response_id)
        if reply is None:
            return
        if event.status == "completed" and reply.tools:
            self._spawn(self._answer_tools(reply))
            return
        if event.status != "completed":
            log.warning(
                "call %s: response %s ended %s: %s",
                self.call_id,
                event.response_id,
                event.status,
                event.response.get("status_details"),
            )
        self._playout.audio(reply.generation, self._outbound.flush_bytes())
        self._playout.finish(reply.generation, reply.actions)
        reply.generated = True

    # --- function calls ------------------------------------------------------------------

    async def _run_tool(self, call: FunctionCallArgumentsDone) -> tuple[str, str]:
        """Run one tool the model called; its output (JSON) for the model, recorded in the
        audit of the turn under way."""
        record = ToolRecord(name=call.name)
        state = self._agent.state
        if state.audit:
            state.audit[-1].tool_calls.append(record)
        try:
            args = json.loads(call.arguments or "{}")
            if not isinstance(args, dict):
                raise ToolError(f"{call.name}: arguments must be a JSON object")
            record.args = args
            context = dataclasses.replace(
                self._agent.tool_context, slots=dict(state.slots), context=dict(state.context)
            )
            result = await self._agent.controller.tools.get(call.name).call(args, context)
        except (ToolError, json.JSONDecodeError) as exc:
            record.error = str(exc)
            return call.call_id, json.dumps({"ok": False, "error": str(exc)})
        if isinstance(result, (Transfer, HangUp, SendDtmf)):
            reply = self._reply
            if reply is not None:
                reply.actions.append(result)
            result = {"ok": True, "action": type(result).__name__.lower()}
        record.result = result
        return call.call_id, json.dumps(result, default=str)

    async def _answer_tools(self, reply: _Reply) -> None:
        outputs = await asyncio.gather(*reply.tools)
        reply.tools.clear()
        if reply.generation != self._generation or self._end_reason is not None:
            return
        for call_id, output in outputs:
            self._queue(ItemCreate(item=function_output(call_id, output)))
        reply.response_id = ""
        self._queue(ResponseCreate())

    # --- barge-in ------------------------------------------------------------------------

    def _barge_in(self, *, cancelled_by_server: bool = False) -> None:
        """The caller takes the turn: stop the current reply where the caller stopped hearing
        it, and tell the model how much of its audio was heard. A response still under way is
        cancelled, unless the server did so itself (speech with `interrupt_response`): the
        model takes one response at a time."""
        reply, self._reply = self._reply, None
        if reply is not None and not reply.generated and not cancelled_by_server:
            self._queue(ResponseCancel())
        cut = self._playout.cut()
        if cut is None:
            return
        self._generation += 1
        self._outbound.reset()
        self._history.append(
            HistoryEntry(
                Speaker.AGENT,
                cut.ledger.heard_text(cut.heard_s),
                interrupted=True,
                generated=cut.ledger.generated_text,
            )
        )
        for record in reversed(self._turn_records):
            if record.generation == cut.ledger.generation:
                record.interrupted = True
                break
        if reply is not None:
            self._truncate(reply, cut.heard_s)

    def _truncate(self, reply: _Reply, heard_s: float) -> None:
        """Truncate the audio item playing at `heard_s` (never past what the model sent)."""
        playing = [(item, start) for item, start in reply.items if start <= heard_s]
        if not playing:
            return
        item_id, start = playing[-1]
        heard_ms = int((heard_s - start) * 1000)
        sent_ms = int(reply.item_s[item_id] * 1000)
        truncate = ItemTruncate(
            item_id=item_id, content_index=0, audio_end_ms=max(0, min(heard_ms, sent_ms))
        )
        self.truncations.append(truncate)
        self._queue(truncate)

    # --- playback callbacks --------------------------------------------------------------

    def _on_first_audio(self, generation: int, now: float) -> None:
        record = self._turn_records[-1] if self._turn_records else None
        if record is not None and record.generation == generation and record.first_audio_at is None:
            record.first_audio_at = now
            self._playout.notify(ReplyLatency(generation, now - record.input_ended_at))

    def _on_played(self, generation: int, text: str) -> None:
        """Reply `generation` played to its end: the caller heard all of `text`."""
        if self._reply is not None and self._reply.generation == generation:
            self._reply = None
        if text:
            self._history.append(HistoryEntry(Speaker.AGENT, text, generated=text))
        if generation == self._generation and not self._caller_speaking:
            self._arm_no_input()

    # --- the model's connection ----------------------------------------------------------

    def _queue(self, event: ClientEventBase) -> None:
        if isinstance(event, AudioAppend) and not self._connected.is_set():
            appends = sum(1 for e in self._outbox if isinstance(e, AudioAppend))
            if appends >= MAX_BUFFERED_APPENDS:
                oldest = next(e for e in self._outbox if isinstance(e, AudioAppend))
                self._outbox.remove(oldest)
        self._outbox.append(event)
        self._outbox_wake.set()

    async def _run_writer(self) -> None:
        """The one sender to the model, in order; holds events while reconnecting."""
        while self._end_reason is None:
            if not self._outbox:
                self._outbox_wake.clear()
                await self._outbox_wake.wait()
                continue
            await self._connected.wait()
            conn = self._conn
            if conn is not None:
                await conn.send(self._outbox.popleft())

    async def _reconnect(self) -> bool:
        """A new session carrying this call's context; False when the model stays away."""
        self._connected.clear()
        # What was queued for the old session has no meaning in the new one, except audio.
        self._outbox = deque(e for e in self._outbox if isinstance(e, AudioAppend))
        for attempt in range(self.options.reconnect_attempts):
            if attempt:
                await asyncio.sleep(0.5 * 2 ** (attempt - 1))
            try:
                conn = await RealtimeConnection.open(
                    self.options.endpoint, within=self.options.connect_timeout_s
                )
            except ConnectionError as exc:
                log.warning("call %s: reconnecting failed: %s", self.call_id, exc)
                continue
            if self._end_reason is not None:
                await conn.close()
                return True
            await self._restore(conn)
            self._conn = conn
            self.reconnects += 1
            self._connected.set()
            return True
        return False

    async def _restore(self, conn: RealtimeConnection) -> None:
        await conn.send(SessionUpdate(session=self._session_config()))
        for entry in self._history:
            if entry.speaker is Speaker.CALLER and (entry.text or entry.dtmf):
                text = entry.text or f"(keyed {entry.dtmf})"
                await conn.send(ItemCreate(item=user_text(text)))
            elif entry.speaker is Speaker.AGENT and entry.text:
                await conn.send(ItemCreate(item=assistant_text(entry.text)))
        state = self._agent.state.state
        reply = self._reply
        spec = self._agent.controller.spec
        instructions = (
            reply.instructions
            if reply is not None
            else state_instructions(spec, state, self._agent.state.last_said)
        )
        await conn.send(SessionUpdate(session=self._state_config(instructions, state)))
        if reply is not None and reply.generation == self._generation and not reply.generated:
            reply.response_id = ""
            reply.tools.clear()
            await conn.send(ResponseCreate())

    # --- timers and ending ---------------------------------------------------------------

    def _arm_no_input(self) -> None:
        if self.policy.no_input_timeout_ms > 0 and self._end_reason is None:
            self._set_timer("no_input", self.policy.no_input_timeout_ms / 1000, self._on_no_input)

    def _on_no_input(self) -> None:
        if not self._playout.speaking and not self._caller_speaking and self._reply is None:
            self._take_turn(TurnKind.NO_INPUT, input_ended_at=self._now())

    def _on_max_duration(self) -> None:
        self._playout.notify(HangUp("max_duration"))
        self._end("max_duration")

    def _now(self) -> float:
        assert self._loop is not None, "RealtimeCall.start() was not awaited"
        return self._loop.time()

    def _set_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer(name)
        assert self._loop is not None, "RealtimeCall.start() was not awaited"
        self._timers[name] = self._loop.call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end(self, reason: str) -> None:
        if self._end_reason is not None:
            return
        self._end_reason = reason
        cut = self._playout.cut()
        if cut is not None and cut.heard_s > 0:
            self._history.append(
                HistoryEntry(
                    Speaker.AGENT,
                    cut.ledger.heard_text(cut.heard_s),
                    interrupted=True,
                    generated=cut.ledger.generated_text,
                )
            )
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._generation += 1
        self._outbox_wake.set()
        self._connected.set()
        self._release_task = asyncio.ensure_future(self._release())

    async def _release(self) -> None:
        current = asyncio.current_task()
        try:
            await self._tell_agent_hangup()
            self._playout.close()  # it sends what is queued for the bridge at once, then stops
            if self._sender is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(self._sender), 1.0)
            if self._conn is not None:
                await self._conn.close()
            tasks = [t for t in self._tasks if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self._closed.set()

    async def _tell_agent_hangup(self) -> None:
        await tell_agent_hangup(
            self._agent,
            call_id=self.call_id,
            reason=self._end_reason or "",
            history=self._history,
            generation=self._generation,
        )
