"""The per-call conductor: the one place where a bridge and the stages meet.

Inbound audio is converted once (streaming) to the listening rate and fed to the VAD and the
STT. The VAD drives the turn detector; the end of a caller turn asks the agent for a reply;
the reply streams through TTS, the outbound converter and the framer into a queue of exact
frames that one sender task paces out to the bridge. Every reply has a generation number:
barge-in bumps it, and whatever carries an older number is dropped where it meets the current
one. The playback ledger turns marks (or the pacer's clock) into the words the caller heard.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from opusagent.audio.formats import AudioChunk, AudioFormat, Encoding
from opusagent.audio.framer import Framer
from opusagent.audio.pacer import Pacer
from opusagent.audio.quality import QualityFigures, QualityMeter
from opusagent.audio.recorder import StereoRecorder
from opusagent.audio.resample import AudioConverter
from opusagent.call.events import (
    AgentAction,
    AgentAudio,
    AgentStatus,
    AgentText,
    CallerAudio,
    CallerHungUp,
    CallerSpeech,
    CallerTranscript,
    CallEvent,
    CallMedia,
    CallNotice,
    CallOutput,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    Mark,
    MarkAcknowledged,
    ProviderError,
    ReplyAudioEnd,
    ReplyLatency,
)
from opusagent.call.hangup import aclose, tell_agent_hangup
from opusagent.call.playback import ReplyLedger
from opusagent.call.stages import (
    STT,
    TTS,
    VAD,
    Agent,
    ExpectSpeech,
    HistoryEntry,
    Speaker,
    SpeechChunk,
    Transcript,
    TurnKind,
    UserTurn,
)
from opusagent.call.turn_policy import TurnPolicy
from opusagent.call.turns import TurnDetector, VoiceChange

log = logging.getLogger(__name__)

SendOutput = Callable[[CallOutput], Awaitable[None]]

FINAL_TRANSCRIPT_TIMEOUT_S = 2.0
"""How long to wait for the STT's final result after the caller stops before using the partial."""
MARK_ACK_GRACE_S = 1.0
"""How long past the pacer's playout end a missing final mark acknowledgement is waited for."""


@dataclass(frozen=True, slots=True)
class Stages:
    """The stages serving one call."""

    vad: VAD
    stt: STT
    agent: Agent
    tts: TTS


@dataclass(slots=True)
class TurnRecord:
    """One user turn and the reply it got, with the times (loop clock) that matter for latency."""

    kind: TurnKind
    text: str
    dtmf: str
    generation: int
    input_ended_at: float
    """When the caller's input ended: last voiced audio, last digit, or the timeout firing."""
    first_audio_at: float | None = None
    """When the first frame of the reply went to the bridge."""
    interrupted: bool = False

    @property
    def response_latency(self) -> float | None:
        if self.first_audio_at is None:
            return None
        return self.first_audio_at - self.input_ended_at


@dataclass(slots=True)
class _Frame:
    generation: int
    data: bytes
    end_s: float
    """Reply-relative time at the end of this frame."""


@dataclass(slots=True)
class _MarkPoint:
    generation: int
    position_s: float
    final: bool


@dataclass(slots=True)
class _ActionItem:
    generation: int
    action: AgentAction


@dataclass(slots=True)
class _ReplyEnd:
    generation: int


_Item = _Frame | _MarkPoint | _ActionItem | _ReplyEnd


class CallProgress:
    """What every conductor of a call (this `Call`, the speech-to-speech `RealtimeCall`) shows
    of the call so far (generation, history, turns, end, audio quality) and how it is waited for
    and closed."""

    _generation: int
    _history: list[HistoryEntry]
    _turn_records: list[TurnRecord]
    _end_reason: str | None
    _quality: QualityMeter
    _closed: asyncio.Event

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return tuple(self._history)

    @property
    def turns(self) -> tuple[TurnRecord, ...]:
        return tuple(self._turn_records)

    @property
    def ended(self) -> bool:
        return self._end_reason is not None

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    def quality(self) -> QualityFigures:
        return self._quality.figures()

    async def wait_closed(self) -> str:
        """Wait until the call has ended and released its stages; returns why it ended."""
        await self._closed.wait()
        return self._end_reason or "closed"

    async def aclose(self, reason: str = "closed") -> None:
        self._end(reason)
        await self.wait_closed()

    def _end(self, reason: str) -> None:
        """End the call for `reason` (the first reason wins); `_closed` is set once released."""
        raise NotImplementedError


class Call(CallProgress):
    """Conducts one phone call from its bridge's events to its bridge's outputs."""

    def __init__(
        self,
        call_id: str,
        media: CallMedia,
        stages: Stages,
        send: SendOutput,
        *,
        policy: TurnPolicy | None = None,
        recorder: StereoRecorder | None = None,
        lead_ms: int = 60,
    ) -> None:
        listen_rate = stages.stt.input_format.sample_rate
        if stages.vad.sample_rate != listen_rate:
            raise ValueError(
                f"VAD rate {stages.vad.sample_rate} Hz differs from STT input rate {listen_rate} Hz"
            )
        if media.inbound.channels != 1 or media.outbound.channels != 1:
            raise ValueError(f"calls are mono; got {media.inbound} in, {media.outbound} out")
        self.call_id = call_id
        self.media = media
        self.policy = policy or TurnPolicy()
        self._stages = stages
        self._send = send
        self._recorder = recorder

        self._listen_format = AudioFormat(Encoding.PCM16, listen_rate)
        self._inbound = AudioConverter(media.inbound, self._listen_format)
        self._outbound = AudioConverter(stages.tts.output_format, media.outbound)
        self._framer = Framer(media.outbound, media.frame_ms)
        self._frame_s = media.frame_ms / 1000
        self._pacer = Pacer(self._frame_s, max(lead_ms / 1000, self._frame_s))
        self._quality = QualityMeter(listen_rate)
        self._recording_agent = (
            AudioConverter(media.outbound, self._listen_format) if recorder else None
        )
        self._turns = TurnDetector(self.policy, stages.vad.window_seconds)

        self._generation = 0
        self._history: list[HistoryEntry] = []
        self._turn_records: list[TurnRecord] = []
        self._speaking: ReplyLedger | None = None
        """The reply being produced or played, until it has played or is cut."""
        self._sent_s = 0.0
        self._pending: deque[_Item] = deque()
        self._inflight: deque[tuple[float, _Item]] = deque()
        """Sent items with the clock time at which they finish playing."""
        self._marks: dict[str, _MarkPoint] = {}
        self._mark_seq = 0
        self._paused_at: float | None = None
        self._paused_heard_s = 0.0
        self._controls: deque[CallOutput] = deque()
        self._wake = asyncio.Event()

        self._finals: list[str] = []
        self._partial = ""
        self._awaiting_final = False
        self._speech_ended_at = 0.0
        self._dtmf = ""
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._caller_s = 0.0
        self._received_s = 0.0
        self._audio_clock_offset = 0.0
        """Clock time minus caller audio time at the latest arrival (the provider's pace)."""

        self._loop: asyncio.AbstractEventLoop | None = None
        self._started_at = 0.0
        self._end_reason: str | None = None
        self._closed = asyncio.Event()
        self._release_task: asyncio.Future[None] | None = None
        self._vad_stream = stages.vad.open_stream(self._on_vad)
        self._stt_stream = stages.stt.open_stream()

    # --- public surface ----------------------------------------------------------------

    @property
    def agent_speaking(self) -> bool:
        return self._speaking is not None

    async def start(self) -> None:
        """Start listening and speaking; the agent is asked for its greeting."""
        self._loop = asyncio.get_running_loop()
        self._started_at = self._loop.time()
        self._spawn(self._run_sender())
        self._spawn(self._run_transcripts())
        self._set_timer("max_duration", self.policy.max_call_duration_s, self._on_max_duration)
        self._start_reply(TurnKind.START, input_ended_at=self._started_at)

    def handle(self, event: CallEvent) -> None:
        """Take one event from the bridge. Never blocks: audio work here is light arithmetic."""
        if self._end_reason is not None:
            return
        match event:
            case CallerAudio(chunk=chunk):
                self._on_caller_audio(chunk)
            case DtmfReceived(digit=digit):
                self._on_dtmf(digit)
            case MarkAcknowledged(name=name):
                self._on_mark_ack(name)
            case CallerHungUp(reason=reason):
                self._end(reason)
            case ProviderError(message=message, fatal=fatal):
                log.warning("call %s: provider error: %s", self.call_id, message)
                if fatal:
                    self._end(f"provider_error: {message}")

    # --- inbound -----------------------------------------------------------------------

    def _on_caller_audio(self, chunk: AudioChunk) -> None:
        if chunk.format != self.media.inbound:
            raise ValueError(
                f"call {self.call_id}: caller audio is {chunk.format}, "
                f"negotiated {self.media.inbound}"
            )
        self._received_s += chunk.duration
        self._audio_clock_offset = self._now() - self._received_s
        samples = self._inbound.to_samples(chunk.data)
        if not len(samples):
            return
        self._quality.push(samples)
        if self._recorder is not None:
            self._recorder.caller(samples, self._caller_s)
        self._caller_s += len(samples) / self._listen_format.sample_rate
        self._vad_stream.push(samples)
        self._stt_stream.push(samples)

    def _on_vad(self, probability: float, stream_time: float) -> None:
        if self._end_reason is not None:
            return
        change = self._turns.update(probability)
        if change is VoiceChange.STARTED:
            self._cancel_timer("no_input")
            self._cancel_timer("final")
            self._awaiting_final = False
            self._stt_stream.speech_started()
            self._notify(CallerSpeech(started=True))
            self._check_barge_in()
        elif change is VoiceChange.ENDED:
            self._stt_stream.speech_ended()
            self._notify(CallerSpeech(started=False))
            # When the caller really stopped: audio time mapped onto the clock by arrival, so
            # the resampler's and the VAD's hold-ups count as latency, not as speech.
            speech_end = stream_time - self._turns.trailing_silence_s
            self._speech_ended_at = speech_end + self._audio_clock_offset
            self._awaiting_final = True
            self._set_timer("final", FINAL_TRANSCRIPT_TIMEOUT_S, self._complete_utterance)
        elif self._turns.speaking:
            self._check_barge_in()

    async def _run_transcripts(self) -> None:
        async for transcript in self._stt_stream.results():
            if self._end_reason is not None:
                return
            self._on_transcript(transcript)

    def _on_transcript(self, transcript: Transcript) -> None:
        if transcript.text.strip():
            self._notify(
                CallerTranscript(transcript.text.strip(), transcript.final, transcript.confidence)
            )
        if transcript.final:
            if transcript.text.strip():
                self._finals.append(transcript.text.strip())
            self._partial = ""
            if self._awaiting_final:
                self._complete_utterance()
                return
        else:
            self._partial = transcript.text
        if self._turns.speaking:
            self._check_barge_in()

    def _utterance_text(self) -> str:
        return " ".join([*self._finals, self._partial]).strip()

    def _check_barge_in(self) -> None:
        """While the agent speaks, decide whether the caller's speech so far cuts it off."""
        policy = self.policy
        if self._speaking is None or not self._turns.speaking:
            return
        if self._turns.voiced_s * 1000 + 1e-6 < policy.barge_in_min_speech_ms:
            return
        text = self._utterance_text()
        if policy.is_backchannel(text):
            return
        words = policy.counted_words(text)
        if self._paused_at is not None:
            if words >= max(1, policy.barge_in_min_words):
                self._interrupt()
        elif policy.barge_in_min_words == 0:
            if words or policy.false_interruption_ms == 0:
                self._interrupt()
            else:
                self._pause()
        elif words >= policy.barge_in_min_words:
            self._interrupt()

    def _complete_utterance(self) -> None:
        """The caller's utterance is over and transcribed: a turn, a resume, or nothing."""
        self._cancel_timer("final")
        self._awaiting_final = False
        text = self._utterance_text()
        self._finals.clear()
        self._partial = ""
        words = self.policy.counted_words(text)
        if self._paused_at is not None:
            stopped_quickly = (
                self._speech_ended_at - self._paused_at <= self.policy.false_interruption_ms / 1000
            )
            if words == 0 and stopped_quickly:
                self._keep_overlap(text)
                self._resume()
                return
            self._interrupt()
        elif self._speaking is not None:
            if words < max(1, self.policy.barge_in_min_words):
                self._keep_overlap(text)
                return
            self._interrupt()
        if not text:
            self._arm_no_input()
            return
        self._history.append(HistoryEntry(Speaker.CALLER, text))
        self._start_reply(TurnKind.SPEECH, text=text, input_ended_at=self._speech_ended_at)

    def _keep_overlap(self, text: str) -> None:
        """What the caller said over the agent without cutting it off stays in the transcript."""
        if text:
            self._history.append(HistoryEntry(Speaker.CALLER, text, overlapped=True))

    def _on_dtmf(self, digit: str) -> None:
        self._cancel_timer("no_input")
        if self._speaking is not None and self.policy.dtmf_interrupts:
            self._interrupt()
        if digit in self.policy.dtmf_terminators:
            self._complete_dtmf()
            return
        self._dtmf += digit
        self._set_timer("dtmf", self.policy.dtmf_inter_digit_ms / 1000, self._complete_dtmf)

    def _complete_dtmf(self) -> None:
        self._cancel_timer("dtmf")
        digits, self._dtmf = self._dtmf, ""
        self._history.append(HistoryEntry(Speaker.CALLER, "", dtmf=digits))
        self._start_reply(TurnKind.DTMF, dtmf=digits, input_ended_at=self._now())

    def _on_mark_ack(self, name: str) -> None:
        point = self._marks.pop(name, None)
        reply = self._speaking
        if point is None or reply is None or point.generation != reply.generation:
            return  # cleared, stale or unknown: acknowledgements after a clear mean nothing
        reply.acked_s = max(reply.acked_s, point.position_s)
        if point.final:
            self._reply_played(point.generation)

    # --- interruptions -----------------------------------------------------------------

    def _heard_s(self) -> float:
        """How far into the current reply the caller has heard."""
        reply = self._speaking
        if reply is None:
            return 0.0
        if self._paused_at is not None:
            return self._paused_heard_s
        played = max(0.0, self._sent_s - self._pacer.buffered(self._now()))
        if not self.media.marks:
            return played
        return max(reply.acked_s, min(played, reply.next_boundary_after(reply.acked_s)))

    def _stop_playback(self) -> None:
        """Tell the provider to drop what it buffered; pending marks become meaningless."""
        now = self._now()
        if self._pacer.buffered(now) > 0 or self._marks:
            self._controls.append(ClearPlayback(self._generation))
        self._pacer.clear(now)
        self._marks.clear()
        self._wake.set()

    def _pause(self) -> None:
        """Stop playback but keep the reply, in case the caller stops without words."""
        now = self._now()
        self._paused_heard_s = self._heard_s()
        self._paused_at = now
        unplayed = [item for end, item in self._inflight if end > now]
        self._inflight.clear()
        self._pending.extendleft(reversed(unplayed))
        self._stop_playback()

    def _resume(self) -> None:
        self._paused_at = None
        self._wake.set()

    def _interrupt(self) -> None:
        """Cut the current reply: record what was heard, and make everything of it stale."""
        reply = self._speaking
        if reply is None:
            return
        heard = reply.heard_text(self._heard_s())
        if self._paused_at is None:
            self._stop_playback()
        self._paused_at = None
        self._generation += 1
        self._speaking = None
        self._pending.clear()
        self._inflight.clear()
        self._marks.clear()
        self._outbound.reset()
        self._framer.reset()
        self._cancel_timer("mark_grace")
        self._history.append(
            HistoryEntry(Speaker.AGENT, heard, interrupted=True, generated=reply.generated_text)
        )
        for record in reversed(self._turn_records):
            if record.generation == reply.generation:
                record.interrupted = True
                break

    # --- replies -----------------------------------------------------------------------

    def _start_reply(
        self, kind: TurnKind, *, input_ended_at: float, text: str = "", dtmf: str = ""
    ) -> None:
        if self._speaking is not None:
            self._interrupt()
        self._cancel_timer("no_input")
        self._generation += 1
        reply = ReplyLedger(self._generation)
        self._speaking = reply
        self._sent_s = 0.0
        turn = UserTurn(kind, text, dtmf, tuple(self._history), self._generation)
        record = TurnRecord(kind, text, dtmf, self._generation, input_ended_at)
        self._turn_records.append(record)
        self._spawn(self._run_reply(turn, reply))

    async def _run_reply(self, turn: UserTurn, reply: ReplyLedger) -> None:
        """Stream the agent's reply through TTS into the outbound queue, actions in order."""
        gen = reply.generation
        parts = self._stages.agent.respond(turn)
        actions: list[AgentAction] = []
        exhausted = False

        async def text_until_action() -> AsyncIterator[str]:
            nonlocal exhausted
            async for part in parts:
                if isinstance(part, str):
                    yield part
                elif isinstance(part, AgentStatus):
                    if gen == self._generation:
                        self._notify(part)
                elif isinstance(part, ExpectSpeech):
                    if gen == self._generation:
                        self._stt_stream.expect(part.phrases)
                else:
                    actions.append(part)
                    return
            exhausted = True

        try:
            while not exhausted:
                speech = self._stages.tts.synthesize(text_until_action())
                try:
                    async for chunk in speech:
                        if gen != self._generation:
                            return
                        self._enqueue_speech(reply, chunk)
                finally:
                    await aclose(speech)
                if gen != self._generation:
                    return
                if actions:
                    self._flush_speech(reply)
                    self._pending.extend(_ActionItem(gen, action) for action in actions)
                    actions.clear()
            self._finish_reply_audio(reply)
        except Exception:
            log.exception("call %s: reply %d failed", self.call_id, gen)
            if gen == self._generation:
                self._finish_reply_audio(reply)
        finally:
            await aclose(parts)

    def _enqueue_speech(self, reply: ReplyLedger, chunk: SpeechChunk) -> None:
        if chunk.audio.format != self._stages.tts.output_format:
            raise ValueError(
                f"TTS declared {self._stages.tts.output_format} but produced {chunk.audio.format}"
            )
        reply.add_text(chunk.text)
        if chunk.text:
            self._notify(AgentText(reply.generation, chunk.text))
        self._enqueue_frames(reply, self._framer.push(self._outbound.to_bytes(chunk.audio.data)))
        if self.media.marks:
            self._pending.append(_MarkPoint(reply.generation, reply.audio_s, final=False))
        self._wake.set()

    def _enqueue_frames(self, reply: ReplyLedger, frames: list[bytes]) -> None:
        for frame in frames:
            reply.add_audio(self._frame_s)
            self._pending.append(_Frame(reply.generation, frame, reply.audio_s))

    def _flush_speech(self, reply: ReplyLedger) -> None:
        """Queue the audio still held in the resampler and framer, so what follows comes after."""
        frames = self._framer.push(self._outbound.flush_bytes())
        last = self._framer.flush(pad=True)
        if last is not None:
            frames.append(last)
        self._enqueue_frames(reply, frames)

    def _finish_reply_audio(self, reply: ReplyLedger) -> None:
        self._flush_speech(reply)
        if self.media.marks:
            self._pending.append(_MarkPoint(reply.generation, reply.audio_s, final=True))
        self._pending.append(_ReplyEnd(reply.generation))
        self._wake.set()

    def _reply_played(self, generation: int) -> None:
        reply = self._speaking
        if reply is None or reply.generation != generation:
            return
        self._cancel_timer("mark_grace")
        self._speaking = None
        text = reply.generated_text
        if text:
            self._history.append(HistoryEntry(Speaker.AGENT, text, generated=text))
        if not self._turns.speaking and not self._awaiting_final:
            self._arm_no_input()

    # --- outbound ----------------------------------------------------------------------

    async def _run_sender(self) -> None:
        """The only writer to the bridge: controls first, then paced frames, marks, actions."""
        try:
            while self._end_reason is None:
                if self._controls:
                    control = self._controls.popleft()
                    await self._send(control)
                    if isinstance(control, HangUp):
                        self._end(control.reason)
                    continue
                item = self._pending[0] if self._pending and self._paused_at is None else None
                if item is None:
                    await self._sleep_until(None)
                    continue
                if item.generation != self._generation:
                    self._pending.popleft()
                    continue
                wait = self._wait_for(item)
                if wait > 0:
                    await self._sleep_until(self._now() + wait)
                    continue
                self._pending.popleft()
                await self._emit(item)
        except Exception:
            log.exception("call %s: sending to the bridge failed", self.call_id)
            self._end("send_failed")

    def _wait_for(self, item: _Item) -> float:
        """Seconds before `item` may go: frames by the pacer, actions once the audio played."""
        now = self._now()
        if isinstance(item, _Frame):
            wait = self._pacer.delay_until_next(now)
        elif isinstance(item, _ActionItem) or (
            isinstance(item, _ReplyEnd) and not self.media.marks
        ):
            wait = self._pacer.buffered(now)
        else:
            wait = 0.0
        # Below a microsecond is clock rounding, not a reason to wait (and to wake again).
        return wait if wait > 1e-6 else 0.0

    async def _emit(self, item: _Item) -> None:
        now = self._now()
        if isinstance(item, _Frame):
            start = self._pacer.sent(now)
            self._sent_s = item.end_s
            self._track_inflight(now, start + self._frame_s, item)
            self._note_first_audio(item.generation, now)
            if self._recording_agent is not None and self._recorder is not None:
                samples = self._recording_agent.to_samples(item.data)
                self._recorder.agent(samples, start - self._started_at)
            await self._send(
                AgentAudio(AudioChunk(item.data, self.media.outbound), item.generation)
            )
        elif isinstance(item, _MarkPoint):
            self._mark_seq += 1
            name = f"{self.call_id}:{item.generation}:{self._mark_seq}"
            self._marks[name] = item
            self._track_inflight(now, self._pacer.playout_end, item)
            await self._send(Mark(name))
        elif isinstance(item, _ActionItem):
            if isinstance(item.action, HangUp):
                # The pacer says everything before the hang-up has played.
                self._reply_played(item.generation)
            await self._send(item.action)
            if isinstance(item.action, HangUp):
                self._end(f"agent_hangup: {item.action.reason}")
        elif self.media.marks:
            grace = self._pacer.buffered(now) + MARK_ACK_GRACE_S
            gen = item.generation
            self._set_timer("mark_grace", grace, lambda: self._reply_played(gen))
            await self._send(ReplyAudioEnd(gen))
        else:
            self._reply_played(item.generation)
            await self._send(ReplyAudioEnd(item.generation))

    def _track_inflight(self, now: float, ends_at: float, item: _Item) -> None:
        inflight = self._inflight
        while inflight and inflight[0][0] <= now:
            inflight.popleft()
        inflight.append((ends_at, item))

    def _note_first_audio(self, generation: int, now: float) -> None:
        record = self._turn_records[-1] if self._turn_records else None
        if record is not None and record.generation == generation and record.first_audio_at is None:
            record.first_audio_at = now
            self._notify(ReplyLatency(generation, now - record.input_ended_at))

    async def _sleep_until(self, deadline: float | None) -> None:
        """Wait for new work, or until `deadline` on the loop clock; no fixed-period polling."""
        handle = None
        if deadline is not None:
            handle = asyncio.get_running_loop().call_at(deadline, self._wake.set)
        await self._wake.wait()
        self._wake.clear()
        if handle is not None:
            handle.cancel()

    # --- timers and lifecycle ----------------------------------------------------------

    def _notify(self, notice: CallNotice) -> None:
        """Tell the bridge at once, ahead of paced audio."""
        self._controls.append(notice)
        self._wake.set()

    def _now(self) -> float:
        assert self._loop is not None, "Call.start() was not awaited"
        return self._loop.time()

    def _set_timer(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._cancel_timer(name)
        assert self._loop is not None, "Call.start() was not awaited"
        self._timers[name] = self._loop.call_later(delay, callback)

    def _cancel_timer(self, name: str) -> None:
        handle = self._timers.pop(name, None)
        if handle is not None:
            handle.cancel()

    def _arm_no_input(self) -> None:
        if self.policy.no_input_timeout_ms > 0 and self._end_reason is None:
            self._set_timer("no_input", self.policy.no_input_timeout_ms / 1000, self._on_no_input)

    def _on_no_input(self) -> None:
        if self._speaking is None and not self._turns.speaking and not self._awaiting_final:
            self._start_reply(TurnKind.NO_INPUT, input_ended_at=self._now())

    def _on_max_duration(self) -> None:
        self._controls.append(HangUp("max_duration"))
        self._wake.set()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _end(self, reason: str) -> None:
        """End the call once: keep what was heard, stop listening, release the stages."""
        if self._end_reason is not None:
            return
        self._end_reason = reason
        reply = self._speaking
        if reply is not None:
            heard = reply.heard_text(self._heard_s())
            self._history.append(
                HistoryEntry(Speaker.AGENT, heard, interrupted=True, generated=reply.generated_text)
            )
            self._speaking = None
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        self._generation += 1
        self._pending.clear()
        self._wake.set()
        self._vad_stream.close()
        self._release_task = asyncio.ensure_future(self._release())

    async def _release(self) -> None:
        current = asyncio.current_task()
        try:
            await self._stt_stream.aclose()
            await self._tell_agent_hangup()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            await asyncio.gather(
                *(t for t in self._tasks if t is not current), return_exceptions=True
            )
            if self._recorder is not None:
                self._recorder.close()
        finally:
            self._closed.set()

    async def _tell_agent_hangup(self) -> None:
        """The agent learns the call ended (an FSA may record it); its reply is never played."""
        await tell_agent_hangup(
            self._stages.agent,
            call_id=self.call_id,
            reason=self._end_reason or "",
            history=self._history,
            generation=self._generation,
        )
