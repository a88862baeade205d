"""Each call's metrics, trace and log context, taken from what the call already does.

A `CallWatch` wraps three things of one call, and nothing else: the bridge writer (it reads
the notices the Call emits: caller speech, transcripts, the agent's state, reply latency, reply
end, stage failures), the agent (when each turn begins, its first text) and the synthesiser
(first text in, first audio out). From these it counts the metrics and, as each turn ends,
writes the turn's span with a child span per stage. Audio frames pass straight through.

Spans of a turn (each a child of the `turn` span, itself a child of the `call` span):
`turn_detection` (end of speech to the VAD's end of turn), `stt` (end of turn to the final
transcript), `agent` (turn given to the agent to its reply's end), `llm` (as reported by the
LLM client), `tts` (first text in to last audio out) and `playback` (first audio out to the
reply's end, or its cut).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field

from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, set_span_in_context

from opusagent.audio.formats import AudioFormat
from opusagent.call.call import SendOutput
from opusagent.call.events import (
    AgentAudio,
    AgentStatus,
    CallerSpeech,
    CallerTranscript,
    CallOutput,
    ReplyAudioEnd,
    ReplyLatency,
    StageFailed,
)
from opusagent.call.stages import TTS, Agent, ReplyPart, SpeechChunk, TurnKind, UserTurn
from opusagent.telemetry.logging import current_call
from opusagent.telemetry.metrics import Metrics
from opusagent.telemetry.tracing import tracer_of

PrivateValues = Callable[[], Iterable[object]]
"""The current values of a call's private slots (read when a log line is written)."""


class Telemetry:
    """One application's metrics and tracer; `watch` instruments each call."""

    def __init__(self, metrics: Metrics, traces: TracerProvider) -> None:
        self.metrics = metrics
        self.traces = traces
        self.tracer: Tracer = tracer_of(traces)

    def watch(
        self,
        call_id: str,
        *,
        bridge: str,
        agent: str,
        private: PrivateValues = lambda: (),
    ) -> CallWatch:
        """Start watching a call: its span begins and it counts as active."""
        return CallWatch(self, call_id, bridge, agent, private)

    def refused(self, bridge: str, reason: str) -> None:
        """A call was refused before it started."""
        self.metrics.refused_calls.labels(bridge, reason).inc()

    def shutdown(self) -> None:
        """Export the spans still buffered."""
        self.traces.shutdown()


def llm_first_token(seconds: float, *, model: str = "") -> None:
    """Report an LLM's time to first token (call it from the LLM client, in the agent's task).

    Recorded in `opusagent_llm_first_token_seconds` and as an `llm` span of the current turn
    of the call whose task this is; outside a call (no current call) it is not recorded.
    """
    watch = current_call.get()
    if isinstance(watch, CallWatch):
        watch.llm_first_token(seconds, model)


@dataclass(slots=True)
class _Turn:
    """The moments (time.time_ns) of one turn, filled in as they happen."""

    kind: TurnKind
    generation: int
    began: int
    """When the turn was given to the agent."""
    speech: tuple[int, int] | None = None
    """End of turn (the VAD's decision) and final transcript, for a spoken turn."""
    input_ended: int | None = None
    first_text: int | None = None
    agent_done: int | None = None
    tts_text: int | None = None
    tts_first_audio: int | None = None
    tts_done: int | None = None
    first_audio: int | None = None
    latency_s: float | None = None
    state: str | None = None
    llm: list[tuple[int, int, str]] = field(default_factory=list)


class CallWatch:
    """The telemetry of one call: see the module's docstring."""

    def __init__(
        self,
        telemetry: Telemetry,
        call_id: str,
        bridge: str,
        agent: str,
        private: PrivateValues,
    ) -> None:
        self._metrics = telemetry.metrics
        self._tracer = telemetry.tracer
        self._call_id = call_id
        self._bridge = bridge
        self._agent = agent
        self._private = private
        self._state: str | None = None
        self._span: Span = self._tracer.start_span(
            "call",
            kind=SpanKind.SERVER,
            attributes={
                "opusagent.call_id": call_id,
                "opusagent.bridge": bridge,
                "opusagent.agent": agent,
            },
        )
        self._context: Context = set_span_in_context(self._span)
        self._trace_id = format(self._span.get_span_context().trace_id, "032x")
        self._turn: _Turn | None = None
        self._turn_ended_at: int | None = None
        """When the VAD ended the caller's turn and the final transcript is awaited."""
        self._speech: tuple[int, int] | None = None
        self._turns = 0
        self._finished = False
        metrics = self._metrics
        self._labels = (bridge, agent)
        metrics.active_calls.labels(*self._labels).inc()
        self._stt_latency = metrics.stt_final_latency.labels(*self._labels)
        self._tts_first_audio = metrics.tts_first_audio.labels(*self._labels)

    # --- the log context -------------------------------------------------------------------

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def agent(self) -> str:
        return self._agent

    @property
    def bridge(self) -> str:
        return self._bridge

    @property
    def state(self) -> str | None:
        return self._state

    @property
    def trace_id(self) -> str:
        return self._trace_id

    def private_values(self) -> Iterable[str]:
        return [str(value) for value in self._private() if value is not None]

    def enter(self) -> None:
        """Make this the current call of the running task and of the tasks it starts from now
        on (see `telemetry.logging.current_call`): their log lines name it."""
        current_call.set(self)

    # --- what is watched -------------------------------------------------------------------

    def wrap_send(self, send: SendOutput) -> SendOutput:
        """`send`, noting each notice before it goes to the bridge."""

        async def watched(output: CallOutput) -> None:
            if type(output) is not AgentAudio:
                self._on_output(output)
            await send(output)

        return watched

    def wrap_agent(self, agent: Agent) -> Agent:
        return _WatchedAgent(agent, self)

    def wrap_tts(self, tts: TTS) -> TTS:
        return _WatchedTTS(tts, self)

    def finish(self, end_reason: str) -> None:
        """The call is over: close its last turn and its span; count it."""
        if self._finished:
            return
        self._finished = True
        self._close_turn(interrupted=False)
        outcome = end_reason.split(":", 1)[0].strip() or "closed"
        self._metrics.active_calls.labels(*self._labels).dec()
        self._metrics.calls.labels(*self._labels, outcome).inc()
        self._span.set_attributes(
            {
                "opusagent.end_reason": end_reason,
                "opusagent.outcome": outcome,
                "opusagent.turns": self._turns,
                "opusagent.final_state": self._state or "",
            }
        )
        if outcome in ("provider_error", "send_failed"):
            self._span.set_status(Status(StatusCode.ERROR, end_reason))
        self._span.end()

    def llm_first_token(self, seconds: float, model: str) -> None:
        self._metrics.llm_first_token.labels(model).observe(seconds)
        turn = self._turn
        if turn is not None:
            now = time.time_ns()
            turn.llm.append((now - round(seconds * 1e9), now, model))

    # --- events ----------------------------------------------------------------------------

    def _on_output(self, output: CallOutput) -> None:
        now = time.time_ns()
        turn = self._turn
        match output:
            case CallerSpeech(started=False):
                self._turn_ended_at = now
            case CallerTranscript(final=True) if self._turn_ended_at is not None:
                self._speech = (self._turn_ended_at, now)
                self._turn_ended_at = None
                self._stt_latency.observe((now - self._speech[0]) / 1e9)
            case AgentStatus(state=state):
                self._state = state
                if turn is not None:
                    turn.state = state
            case ReplyLatency(generation=generation, seconds=seconds):
                if turn is not None and turn.generation == generation:
                    turn.first_audio = now
                    turn.latency_s = seconds
                    turn.input_ended = now - round(seconds * 1e9)
                    self._metrics.reply_latency.labels(*self._labels, turn.kind.value).observe(
                        seconds
                    )
            case ReplyAudioEnd(generation=generation):
                if turn is not None and turn.generation == generation:
                    self._close_turn(interrupted=False, now=now)
            case StageFailed(stage=stage, kind=kind):
                self._metrics.stage_failures.labels(stage, kind).inc()
            case _:
                pass

    def _turn_began(self, user_turn: UserTurn) -> _Turn | None:
        """A turn was given to the agent (in the task that will run its reply, which becomes
        this call's): the previous turn, if still playing, was cut."""
        self.enter()
        self._close_turn(interrupted=user_turn.kind is not TurnKind.HANGUP)
        if user_turn.kind is TurnKind.HANGUP:
            return None
        turn = _Turn(user_turn.kind, user_turn.generation, time.time_ns())
        if user_turn.kind is TurnKind.SPEECH:
            turn.speech, self._speech = self._speech, None
        self._turn = turn
        self._turns += 1
        return turn

    def _close_turn(self, *, interrupted: bool, now: int | None = None) -> None:
        turn, self._turn = self._turn, None
        if turn is None:
            return
        if interrupted:
            self._metrics.barge_ins.labels(*self._labels).inc()
        self._write_spans(turn, now or time.time_ns(), interrupted)

    def _write_spans(self, turn: _Turn, end: int, interrupted: bool) -> None:
        starts = [turn.began, *(t for t in (turn.input_ended,) if t is not None)]
        if turn.speech is not None:
            starts.append(turn.speech[0])
        attributes: dict[str, str | int | float | bool] = {
            "opusagent.turn.kind": turn.kind.value,
            "opusagent.turn.generation": turn.generation,
            "opusagent.turn.interrupted": interrupted,
        }
        if turn.state is not None:
            attributes["opusagent.state"] = turn.state
        if turn.latency_s is not None:
            attributes["opusagent.turn.latency_s"] = turn.latency_s
        span = self._tracer.start_span(
            "turn", context=self._context, start_time=min(starts), attributes=attributes
        )
        parent = set_span_in_context(span)
        stages: list[tuple[str, int | None, int | None, dict[str, str | float]]] = []
        if turn.speech is not None:
            stages.append(("turn_detection", turn.input_ended, turn.speech[0], {}))
            stages.append(("stt", turn.speech[0], turn.speech[1], {}))
        first_text = _seconds(turn.began, turn.first_text)
        stages.append(
            ("agent", turn.began, turn.agent_done or end, _named("first_text_s", first_text))
        )
        stages.extend(
            ("llm", start, stop, {"opusagent.llm.model": m}) for start, stop, m in turn.llm
        )
        first_audio = _seconds(turn.tts_text, turn.tts_first_audio)
        stages.append(
            ("tts", turn.tts_text, turn.tts_done or end, _named("first_audio_s", first_audio))
        )
        stages.append(("playback", turn.first_audio, end, {}))
        for name, start, stop, extra in stages:
            if start is None or stop is None or stop < start:
                continue
            child = self._tracer.start_span(
                name, context=parent, start_time=start, attributes=_prefixed(extra)
            )
            child.end(end_time=stop)
        span.end(end_time=max(end, *starts))

    # --- called by the wrappers --------------------------------------------------------------

    def _agent_text(self, turn: _Turn) -> None:
        if turn.first_text is None:
            turn.first_text = time.time_ns()

    def _tts_text(self, turn: _Turn) -> None:
        if turn.tts_text is None:
            turn.tts_text = time.time_ns()

    def _tts_audio(self, turn: _Turn) -> None:
        if turn.tts_first_audio is None and turn.tts_text is not None:
            turn.tts_first_audio = time.time_ns()
            self._tts_first_audio.observe((turn.tts_first_audio - turn.tts_text) / 1e9)


def _seconds(start: int | None, stop: int | None) -> float | None:
    return (stop - start) / 1e9 if start is not None and stop is not None else None


def _named(name: str, value: float | None) -> dict[str, str | float]:
    return {name: value} if value is not None else {}


def _prefixed(attributes: dict[str, str | float]) -> dict[str, str | float]:
    return {k if k.startswith("opusagent.") else f"opusagent.{k}": v for k, v in attributes.items()}


class _WatchedAgent:
    """An agent whose turns are timed; its replies pass through unchanged."""

    def __init__(self, inner: Agent, watch: CallWatch) -> None:
        self._inner = inner
        self._watch = watch

    def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        watched = self._watch._turn_began(turn)
        parts = self._inner.respond(turn)
        return parts if watched is None else self._timed(parts, watched)

    async def _timed(
        self, parts: AsyncIterator[ReplyPart], turn: _Turn
    ) -> AsyncIterator[ReplyPart]:
        try:
            async for part in parts:
                if isinstance(part, str):
                    self._watch._agent_text(turn)
                yield part
        finally:
            turn.agent_done = time.time_ns()
            close = getattr(parts, "aclose", None)
            if close is not None:
                await close()


class _WatchedTTS:
    """A synthesiser whose first audio is timed; its speech passes through unchanged."""

    def __init__(self, inner: TTS, watch: CallWatch) -> None:
        self._inner = inner
        self._watch = watch

    @property
    def output_format(self) -> AudioFormat:
        return self._inner.output_format

    async def prerender(self, texts: Sequence[str]) -> None:
        await self._inner.prerender(texts)

    def synthesize(self, text: AsyncIterator[str]) -> AsyncIterator[SpeechChunk]:
        turn = self._watch._turn
        if turn is None:
            return self._inner.synthesize(text)
        return self._timed(self._inner.synthesize(self._text(text, turn)), turn)

    async def _text(self, text: AsyncIterator[str], turn: _Turn) -> AsyncIterator[str]:
        async for part in text:
            self._watch._tts_text(turn)
            yield part

    async def _timed(
        self, speech: AsyncIterator[SpeechChunk], turn: _Turn
    ) -> AsyncIterator[SpeechChunk]:
        try:
            async for chunk in speech:
                self._watch._tts_audio(turn)
                yield chunk
        finally:
            turn.tts_done = time.time_ns()
            close = getattr(speech, "aclose", None)
            if close is not None:
                await close()
