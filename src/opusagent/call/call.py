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
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

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
    StageFailed,
)
from opusagent.call.fallback import Fallback, SpokenLines, StageFailure
from opusagent.call.hangup import aclose, tell_agent_hangup
from opusagent.call.playback import ReplyLedger
from opusagent.call.stages import (
    STT,
    TTS,
    VAD,
    Agent,
    ExpectSpeech,
    HistoryEntry,
    ReplyPart,
    Speaker,
    SpeechChunk,
    STTStream,
    Transcript,
    TurnKind,
    UserTurn,
)
from opusagent.call.turn_policy import TurnPolicy
from opusagent.call.turns import TurnDetector, VoiceChange

log = logging.getLogger(__name__)

SendOutput = Callable[[CallOutput], Awaitable[None]]

STT_RESTART_INTERVAL_S = 1.0
"""A failed recogniser stream is replaced at most this often."""
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
    failure: str | None = None
    """The stage failure behind this turn's fallback line, if it had one."""

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
        fallback: Fallback | None = None,
        lines: SpokenLines | None = None,
    ) -> None:
        """`fallback` is what the caller hears when a stage fails (default: the built-in
        lines); `lines` holds its audio, shared by the calls of one voice (default: those of
        the calls sharing this call's TTS object)."""
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
        self.fallback = fallback or Fallback()
        self._lines = lines or SpokenLines.of(stages.tts)
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
        self._turns = TurnDetector(self.policy, stages.vad.window_seconds, listen_rate)

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
        self._failures = 0
        """Stage failures in a row (a reply that plays whole starts the count again)."""
        self._handed_off = False
        self._preparing: asyncio.Task[None] | None = None
        """Rendering the fallback lines, from the call's start."""
        self._expected: Sequence[str] | None = None
        """The latest listening hint, for a replacement recogniser stream."""
        self._stt_replacing = False
        self._stt_restarted_at: float | None = None
        self._utterance_lost: StageFailure | None = None
        """The recogniser failed during the current utterance: its words may be lost."""
        self._transcripts: asyncio.Task[None] | None = None
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
        self._preparing = self._spawn(self._prepare_lines())
        self._spawn(self._run_sender())
        self._transcripts = self._spawn(self._run_transcripts(self._stt_stream))
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
        try:
            self._stt_stream.push(samples)
        except Exception as exc:
            self._stt_failed(StageFailure("stt", "error", _describe(exc)))
        if self._turns.audio(samples) is VoiceChange.ENDED:
            self._on_speech_ended()

    def _on_vad(self, probability: float, stream_time: float) -> None:
        if self._end_reason is not None:
            return
        change = self._turns.update(probability)
        if change is VoiceChange.STARTED:
            self._cancel_timer("no_input")
            self._cancel_timer("final")
            self._awaiting_final = False
            self._tell_stt(lambda stream: stream.speech_started())
            self._notify(CallerSpeech(started=True))
            self._check_barge_in()
        elif change is VoiceChange.ENDED:
            self._on_speech_ended()
        elif self._turns.speaking:
            self._check_barge_in()

    def _on_speech_ended(self) -> None:
        """The turn detector ended the utterance (on a VAD window or on arriving audio)."""
        self._tell_stt(lambda stream: stream.speech_ended())
        self._notify(CallerSpeech(started=False))
        # When the caller really stopped: audio time mapped onto the clock by arrival, so
        # the resampler's and the VAD's hold-ups count as latency, not as speech.
        self._speech_ended_at = self._turns.speech_end_s + self._audio_clock_offset
        self._awaiting_final = True
        limit = self.policy.stt_final_timeout_ms / 1000
        self._set_timer("final", limit, self._on_final_timeout)

    # --- the recogniser ----------------------------------------------------------------

    def _hint_stt(self) -> None:
        """Tell the recogniser what the caller is likely to say next."""
        phrases = self._expected
        self._tell_stt(lambda stream: stream.expect(phrases))

    def _tell_stt(self, action: Callable[[STTStream], None]) -> None:
        try:
            action(self._stt_stream)
        except Exception as exc:
            self._stt_failed(StageFailure("stt", "error", _describe(exc)))

    async def _run_transcripts(self, stream: STTStream) -> None:
        try:
            async for transcript in stream.results():
                if self._end_reason is not None:
                    return
                self._on_transcript(transcript)
        except Exception as exc:
            failure = StageFailure("stt", "error", _describe(exc))
        else:
            failure = StageFailure("stt", "error", "its results ended before the call did")
        if stream is self._stt_stream:
            self._stt_failed(failure)

    def _stt_failed(self, failure: StageFailure) -> None:
        """The recogniser stream failed: replace it (once at a time); the call goes on."""
        if self._end_reason is None and not self._stt_replacing:
            self._stt_replacing = True
            self._spawn(self._replace_stt(failure))

    async def _replace_stt(self, failure: StageFailure) -> None:
        old = self._stt_stream
        if self._transcripts is not None and self._transcripts is not asyncio.current_task():
            self._transcripts.cancel()
        await _close_stt(old)
        stream: STTStream | None = None
        while stream is None:
            if self._stt_restarted_at is not None:
                wait = self._stt_restarted_at + STT_RESTART_INTERVAL_S - self._now()
                await asyncio.sleep(max(0.0, wait))
            self._stt_restarted_at = self._now()
            try:
                stream = self._stages.stt.open_stream()
            except Exception as exc:
                log.warning("call %s: no new recogniser stream: %s", self.call_id, _describe(exc))
        self._stt_stream = stream
        self._stt_replacing = False
        self._transcripts = self._spawn(self._run_transcripts(stream))
        if self._expected is not None:
            self._hint_stt()
        if self._awaiting_final:
            self._end_utterance_without_final(failure)
        elif self._turns.speaking:
            self._note_failure(failure, "a new recogniser stream hears the rest of the utterance")
            self._tell_stt(lambda stream: stream.speech_started())
            self._utterance_lost = failure
        else:
            self._note_failure(failure, "a new recogniser stream replaces it; nothing was lost")

    def _on_final_timeout(self) -> None:
        """The final transcript is late: the partial stands in, or the words are lost."""
        limit = self.policy.stt_final_timeout_ms / 1000
        self._end_utterance_without_final(
            StageFailure("stt", "timeout", f"no final transcript within {limit:g} s")
        )

    def _end_utterance_without_final(self, failure: StageFailure) -> None:
        if self._utterance_text():
            self._note_failure(failure, "the partial transcript stands in")
            self._complete_utterance()
        else:
            self._note_failure(failure, "the utterance's words are lost")
            self._complete_utterance(lost=failure)

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

    def _complete_utterance(self, lost: StageFailure | None = None) -> None:
        """The caller's utterance is over and transcribed: a turn, a resume, or nothing; or,
        when the recogniser failed (`lost`) and no words came, the fallback line."""
        self._cancel_timer("final")
        self._awaiting_final = False
        lost, self._utterance_lost = lost or self._utterance_lost, None
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
            if lost is None:
                self._arm_no_input()
            else:
                self._start_reply(
                    TurnKind.SPEECH, input_ended_at=self._speech_ended_at, failure=lost
                )
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
        self,
        kind: TurnKind,
        *,
        input_ended_at: float,
        text: str = "",
        dtmf: str = "",
        failure: StageFailure | None = None,
    ) -> None:
        """Ask the agent for a reply to this turn; or, when a stage already failed it, say the
        fallback line."""
        if self._handed_off:
            return
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
        if failure is None:
            self._spawn(self._run_reply(turn, reply))
        else:
            self._spawn(self._fall_back(reply, failure))

    async def _run_reply(self, turn: UserTurn, reply: ReplyLedger) -> None:
        """Stream the agent's reply through TTS into the outbound queue, actions in order.

        Each wait on a stage is bounded by the turn policy: the agent's next part, and the
        synthesiser's audio once it has text to speak (or its text has ended). A stage that
        raises, overruns or returns audio in another format ends the reply with the fallback
        line.
        """
        gen = reply.generation
        loop = asyncio.get_running_loop()
        agent_s = self.policy.agent_timeout_ms / 1000
        tts_s = self.policy.tts_timeout_ms / 1000
        actions: list[AgentAction] = []
        exhausted = text_ended = False
        failure: StageFailure | None = None
        owed_since: float | None = None
        """When the synthesiser was given text, or its text ended, with no audio since."""
        watch: asyncio.Timeout | None = None
        """The bound on the current wait for audio, moved as text is given."""

        def owe() -> None:
            nonlocal owed_since
            if owed_since is None:
                owed_since = loop.time()
                if watch is not None and watch.when() is None:
                    watch.reschedule(owed_since + tts_s)

        async def text_until_action(parts: AsyncIterator[ReplyPart]) -> AsyncIterator[str]:
            nonlocal exhausted, text_ended, failure
            try:
                while True:
                    try:
                        async with asyncio.timeout(agent_s):
                            part = await anext(parts)
                    except StopAsyncIteration:
                        exhausted = True
                        return
                    if isinstance(part, str):
                        if part.strip():
                            owe()
                        yield part
                    elif isinstance(part, AgentStatus):
                        if gen == self._generation:
                            self._notify(part)
                    elif isinstance(part, ExpectSpeech):
                        if gen == self._generation:
                            self._expected = part.phrases
                            self._hint_stt()
                    else:
                        actions.append(part)
                        return
            except TimeoutError:
                failure = StageFailure("agent", "timeout", f"no reply part within {agent_s:g} s")
                exhausted = True
            except Exception as exc:
                failure = StageFailure("agent", "error", _describe(exc))
                exhausted = True
            finally:
                text_ended = True
                owe()

        try:
            parts = self._stages.agent.respond(turn)
        except Exception as exc:
            failure = StageFailure("agent", "error", _describe(exc))
            self._note_failure(failure, "the caller hears the fallback line")
            await self._fall_back(reply, failure)
            return
        try:
            while not exhausted and failure is None:
                owed_since, text_ended = None, False
                speech = self._stages.tts.synthesize(text_until_action(parts))
                try:
                    while True:
                        deadline: float | None = None if owed_since is None else owed_since + tts_s
                        try:
                            async with asyncio.timeout_at(deadline) as watch:
                                chunk = await anext(speech)
                        except StopAsyncIteration:
                            break
                        finally:
                            watch = None
                        if gen != self._generation:
                            return
                        wrong = self._wrong_speech(chunk)
                        if wrong is not None:
                            failure = failure or StageFailure("tts", "garbage", wrong)
                            break
                        owed_since = loop.time() if text_ended else None
                        self._enqueue_speech(reply, chunk)
                except TimeoutError:
                    failure = failure or StageFailure(
                        "tts", "timeout", f"no audio within {tts_s:g} s of its text"
                    )
                except Exception as exc:
                    failure = failure or StageFailure("tts", "error", _describe(exc))
                finally:
                    await aclose(speech)
                if gen != self._generation:
                    return
                if actions and failure is None:
                    self._flush_speech(reply)
                    self._pending.extend(_ActionItem(gen, action) for action in actions)
                    actions.clear()
            if failure is not None:
                self._note_failure(failure, "the caller hears the fallback line")
                await self._fall_back(reply, failure)
                return
            self._failures = 0
            self._finish_reply_audio(reply)
        except Exception:
            log.exception("call %s: reply %d failed", self.call_id, gen)
            if gen == self._generation:
                self._finish_reply_audio(reply)
        finally:
            await aclose(parts)

    def _wrong_speech(self, chunk: object) -> str | None:
        """Why a synthesiser's chunk cannot be played, or None when it can."""
        expected = self._stages.tts.output_format
        if not isinstance(chunk, SpeechChunk) or not isinstance(chunk.audio, AudioChunk):
            return f"it produced {type(chunk).__name__}, not speech"
        if not isinstance(chunk.audio.data, bytes | bytearray | memoryview):
            return f"its audio is {type(chunk.audio.data).__name__}, not bytes"
        if chunk.audio.format != expected:
            return f"it declared {expected} but produced {chunk.audio.format}"
        return None

    async def _fall_back(self, reply: ReplyLedger, failure: StageFailure) -> None:
        """End `reply` with the fallback line in place of what failed; after `limit` failures
        in a row, with the hand-off line and the hand-off."""
        gen = reply.generation
        self._failures += 1
        fallback = self.fallback
        handoff = 0 < fallback.limit <= self._failures
        for record in reversed(self._turn_records):
            if record.generation == gen:
                record.failure = str(failure)
                break
        text = fallback.handoff_say if handoff else fallback.say
        frames = await self._line_frames(text)
        if gen != self._generation:
            return
        if handoff:
            log.warning(
                "call %s: %d stage failures in a row: handing off (%s)",
                self.call_id,
                self._failures,
                fallback.handoff,
            )
            self._handed_off = True
        self._flush_speech(reply)
        reply.add_text(text)
        self._notify(AgentText(gen, text))
        if frames is None:
            log.warning("call %s: the fallback line was never rendered: not voiced", self.call_id)
        else:
            self._enqueue_frames(reply, frames)
        if handoff:
            self._pending.append(_ActionItem(gen, fallback.handoff))
        self._finish_reply_audio(reply)

    async def _prepare_lines(self) -> None:
        """Render the fallback lines in this call's voice and format, unless already held."""
        try:
            await self._lines.prepare(
                self._stages.tts, self.fallback.lines, self.media.outbound, self.media.frame_ms
            )
        except Exception as exc:
            log.warning(
                "call %s: the fallback lines could not be rendered: %s",
                self.call_id,
                _describe(exc),
            )

    async def _line_frames(self, text: str) -> Sequence[bytes] | None:
        """A fallback line's frames, waiting (within the TTS bound) if they are being made."""
        preparing = self._preparing
        if preparing is not None and not preparing.done():
            await asyncio.wait({preparing}, timeout=self.policy.tts_timeout_ms / 1000)
        return self._lines.frames(text, self.media.outbound, self.media.frame_ms)

    def _note_failure(self, failure: StageFailure, consequence: str) -> None:
        """Log a stage failure once, with the call, and tell telemetry."""
        log.warning("call %s: %s; %s", self.call_id, failure, consequence)
        self._notify(StageFailed(failure.stage, failure.kind, self._generation))

    def _enqueue_speech(self, reply: ReplyLedger, chunk: SpeechChunk) -> None:
        reply.add_text(chunk.text)
        if chunk.text:
            self._notify(AgentText(reply.generation, chunk.text))
        self._enqueue_frames(reply, self._framer.push(self._outbound.to_bytes(chunk.audio.data)))
        if self.media.marks:
            self._pending.append(_MarkPoint(reply.generation, reply.audio_s, final=False))
        self._wake.set()

    def _enqueue_frames(self, reply: ReplyLedger, frames: Sequence[bytes]) -> None:
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
        if (
            self.policy.no_input_timeout_ms > 0
            and self._end_reason is None
            and not self._handed_off
        ):
            self._set_timer("no_input", self.policy.no_input_timeout_ms / 1000, self._on_no_input)

    def _on_no_input(self) -> None:
        if self._speaking is None and not self._turns.speaking and not self._awaiting_final:
            self._start_reply(TurnKind.NO_INPUT, input_ended_at=self._now())

    def _on_max_duration(self) -> None:
        self._controls.append(HangUp("max_duration"))
        self._wake.set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _close_stt(stream: STTStream) -> None:
    """Close a failed recogniser stream; whatever it does then is no longer our business."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(STT_RESTART_INTERVAL_S):
            await stream.aclose()
