"""Scripted calls in virtual time: a caller timeline in, what the agent said and when out.

    timeline = Timeline(duration=12.0)
    timeline.say("I lost my card", at=2.0, seconds=1.2)
    timeline.dtmf("12#", at=6.0)
    result = run_timeline(timeline, agent=ScriptedAgent(lambda turn: "Sorry to hear that."))
    assert result.agent_lines() == [...]

The provider side behaves like Twilio Media Streams: it plays frames back to back in real
time, acknowledges each mark when the audio before it has played, and on `clear` drops its
buffer and returns every pending mark at once.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from opusagent.audio.codecs import encode
from opusagent.audio.formats import MULAW_8K, AudioChunk, AudioFormat
from opusagent.audio.recorder import StereoRecorder
from opusagent.call.call import Call, Stages, TurnRecord
from opusagent.call.events import (
    AgentAudio,
    CallerAudio,
    CallerHungUp,
    CallMedia,
    CallOutput,
    ClearPlayback,
    DtmfReceived,
    HangUp,
    Mark,
    MarkAcknowledged,
)
from opusagent.call.fallback import Fallback
from opusagent.call.stages import STT, TTS, VAD, Agent, HistoryEntry, Speaker
from opusagent.call.turn_policy import TurnPolicy
from opusagent.testing.fakes import FakeTTS, FakeVAD, ScriptedSTT, Utterance
from opusagent.testing.virtual_time import run_in_virtual_time

FRAME_S = 0.02
SPEECH_RMS = 3000.0
DTMF_SPACING_S = 0.25

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Digit:
    at: float
    digit: str


@dataclass
class Timeline:
    """What the caller does, in seconds from the start of the call."""

    duration: float
    utterances: list[Utterance] = field(default_factory=list)
    digits: list[_Digit] = field(default_factory=list)
    hangup_at: float | None = None

    def say(self, text: str, *, at: float, seconds: float | None = None) -> Timeline:
        """The caller speaks `text` from `at` for `seconds` (default 0.3 s per word)."""
        length = seconds if seconds is not None else 0.3 * max(1, len(text.split()))
        self.utterances.append(Utterance(at, at + length, text))
        return self

    def noise(self, *, at: float, seconds: float) -> Timeline:
        """The caller makes a sound with no words (a cough, a door)."""
        self.utterances.append(Utterance(at, at + seconds, ""))
        return self

    def dtmf(self, keys: str, *, at: float, spacing: float = DTMF_SPACING_S) -> Timeline:
        """The caller presses `keys`, one every `spacing` seconds from `at`."""
        self.digits.extend(_Digit(at + i * spacing, key) for i, key in enumerate(keys))
        return self

    def hangup(self, *, at: float) -> Timeline:
        self.hangup_at = at
        return self

    def speaking_at(self, t: float) -> bool:
        return any(u.start <= t < u.end for u in self.utterances)


@dataclass(frozen=True, slots=True)
class Played:
    """Agent audio that the provider really played, from `start` to `end`."""

    start: float
    end: float
    generation: int


@dataclass
class TimelineResult:
    """Everything that crossed the bridge, the call's history and its turn records."""

    outputs: list[tuple[float, CallOutput]]
    played: list[Played]
    history: tuple[HistoryEntry, ...]
    turns: tuple[TurnRecord, ...]
    end_reason: str

    def agent_lines(self) -> list[str]:
        """What the caller heard the agent say, line by line."""
        return [e.text for e in self.history if e.speaker is Speaker.AGENT]

    def caller_lines(self) -> list[str]:
        return [e.text or e.dtmf for e in self.history if e.speaker is Speaker.CALLER]

    def clears(self) -> list[float]:
        """Times at which playback was cleared (barge-in)."""
        return [t for t, out in self.outputs if isinstance(out, ClearPlayback)]

    def of_type(self, kind: type[T]) -> list[tuple[float, T]]:
        return [(t, out) for t, out in self.outputs if isinstance(out, kind)]

    def audio_sent(self, generation: int | None = None) -> float:
        """Seconds of agent audio sent (for one generation, or all)."""
        return sum(
            out.chunk.duration
            for _, out in self.of_type(AgentAudio)
            if generation is None or out.generation == generation
        )

    def playing_at(self, t: float) -> bool:
        return any(p.start <= t < p.end for p in self.played)


class TwilioLikeProvider:
    """The far end of the bridge: plays audio in real time, acknowledges marks like Twilio."""

    def __init__(self) -> None:
        self.call: Call | None = None
        self.outputs: list[tuple[float, CallOutput]] = []
        self.played: list[Played] = []
        self._play_end = 0.0
        self._pending_marks: dict[str, asyncio.TimerHandle] = {}
        self.hung_up = False

    async def send(self, output: CallOutput) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.outputs.append((now, output))
        match output:
            case AgentAudio(chunk=chunk, generation=generation):
                start = max(self._play_end, now)
                self._play_end = start + chunk.duration
                self.played.append(Played(start, self._play_end, generation))
            case Mark(name=name):
                self._pending_marks[name] = loop.call_at(
                    max(self._play_end, now), self._acknowledge, name
                )
            case ClearPlayback():
                self._clear(now)
            case HangUp():
                self.hung_up = True
            case _:
                pass

    def _clear(self, now: float) -> None:
        self.played = [
            Played(p.start, min(p.end, now), p.generation) for p in self.played if p.start < now
        ]
        self._play_end = now
        for name, handle in list(self._pending_marks.items()):
            handle.cancel()
            asyncio.get_running_loop().call_soon(self._acknowledge, name)

    def _acknowledge(self, name: str) -> None:
        self._pending_marks.pop(name, None)
        if self.call is not None:
            self.call.handle(MarkAcknowledged(name))


def run_timeline(
    timeline: Timeline,
    *,
    agent: Agent,
    policy: TurnPolicy | None = None,
    tts: TTS | None = None,
    stt: STT | None = None,
    vad: VAD | None = None,
    marks: bool = True,
    audio_format: AudioFormat = MULAW_8K,
    stt_final_delay_s: float = 0.0,
    recording: Path | None = None,
    fallback: Fallback | None = None,
) -> TimelineResult:
    """Play `timeline` against a real Call with the given (or fake) stages, in virtual time.

    With `recording`, the call is recorded there as a stereo WAV (caller left, agent right);
    `fallback` is what the call says when a stage fails (default: the built-in lines).
    """

    async def main() -> TimelineResult:
        return await play_timeline(
            timeline,
            agent=agent,
            policy=policy,
            tts=tts,
            stt=stt,
            vad=vad,
            marks=marks,
            audio_format=audio_format,
            stt_final_delay_s=stt_final_delay_s,
            recording=recording,
            fallback=fallback,
        )

    return run_in_virtual_time(main)


async def play_timeline(
    timeline: Timeline,
    *,
    agent: Agent,
    policy: TurnPolicy | None = None,
    tts: TTS | None = None,
    stt: STT | None = None,
    vad: VAD | None = None,
    marks: bool = True,
    audio_format: AudioFormat = MULAW_8K,
    stt_final_delay_s: float = 0.0,
    recording: Path | None = None,
    call_id: str = "timeline",
    fallback: Fallback | None = None,
) -> TimelineResult:
    """Play `timeline` on the running loop; several may run at once, sharing stages."""
    provider = TwilioLikeProvider()
    stages = Stages(
        vad=vad or FakeVAD(),
        stt=stt or ScriptedSTT(timeline.utterances, final_delay_s=stt_final_delay_s),
        agent=agent,
        tts=tts or FakeTTS(),
    )
    recorder = None
    if recording is not None:
        recorder = StereoRecorder(recording, stages.stt.input_format.sample_rate)
    call = _connect(provider, call_id, stages, audio_format, marks, policy, recorder, fallback)
    started_at = asyncio.get_running_loop().time()
    await call.start()
    await _drive_caller(call, timeline, audio_format, provider, started_at)
    reason = await _hang_up(call, "timeline_end")
    return TimelineResult(provider.outputs, provider.played, call.history, call.turns, reason)


@dataclass(frozen=True, slots=True)
class AudioCallResult:
    call: Call
    started_at: float
    """Loop time at which the caller's audio begins (each frame goes once it is captured)."""


async def play_audio(
    audio: bytes,
    stages: Stages,
    *,
    audio_format: AudioFormat = MULAW_8K,
    policy: TurnPolicy | None = None,
    call_id: str = "audio",
) -> AudioCallResult:
    """Call with recorded caller audio: 20 ms frames on the loop's clock, then hang up.

    With real stages on a real loop this runs in real time; on a `VirtualTimeLoop`, at once.
    """
    call = _connect(TwilioLikeProvider(), call_id, stages, audio_format, True, policy, None)
    loop = asyncio.get_running_loop()
    await call.start()
    started_at = loop.time()
    size = audio_format.bytes_for(FRAME_S)
    for k in range(len(audio) // size):
        await asyncio.sleep(max(0.0, started_at + (k + 1) * FRAME_S - loop.time()))
        if call.ended:
            break
        call.handle(CallerAudio(AudioChunk(audio[k * size : (k + 1) * size], audio_format)))
    await _hang_up(call, "caller")
    return AudioCallResult(call, started_at)


def _connect(
    provider: TwilioLikeProvider,
    call_id: str,
    stages: Stages,
    fmt: AudioFormat,
    marks: bool,
    policy: TurnPolicy | None,
    recorder: StereoRecorder | None,
    fallback: Fallback | None = None,
) -> Call:
    """A Call (not yet started) whose far end is `provider`."""
    media = CallMedia(inbound=fmt, outbound=fmt, marks=marks)
    call = Call(
        call_id,
        media,
        stages,
        provider.send,
        policy=policy,
        recorder=recorder,
        fallback=fallback,
    )
    provider.call = call
    return call


async def _hang_up(call: Call, reason: str) -> str:
    """End the call from the caller's side unless it already ended; why it ended."""
    if not call.ended:
        call.handle(CallerHungUp(reason))
    return await call.wait_closed()


def _press(call: Call, digit: str) -> None:
    if not call.ended:
        call.handle(DtmfReceived(digit))


async def _drive_caller(
    call: Call,
    timeline: Timeline,
    fmt: AudioFormat,
    provider: TwilioLikeProvider,
    started_at: float,
) -> None:
    """Send 20 ms caller frames on an absolute schedule, with digits and hangup at their times."""
    loop = asyncio.get_running_loop()
    rng = np.random.default_rng(0)
    samples_per_frame = round(FRAME_S * fmt.sample_rate)
    silence = encode(np.zeros(samples_per_frame, dtype=np.int16), fmt.encoding)
    for digit in timeline.digits:
        loop.call_at(started_at + digit.at, _press, call, digit.digit)
    end = timeline.duration if timeline.hangup_at is None else timeline.hangup_at
    for k in range(round(end / FRAME_S)):
        t = k * FRAME_S
        # Like a provider, a frame goes out once its 20 ms have been captured.
        await asyncio.sleep(max(0.0, started_at + t + FRAME_S - loop.time()))
        if call.ended or provider.hung_up:
            return
        if timeline.speaking_at(t):
            noise = rng.normal(0.0, SPEECH_RMS, samples_per_frame).clip(-32768, 32767)
            frame = encode(noise.astype(np.int16), fmt.encoding)
        else:
            frame = silence
        call.handle(CallerAudio(AudioChunk(frame, fmt)))
    await asyncio.sleep(max(0.0, started_at + end - loop.time()))
    if timeline.hangup_at is not None and not call.ended:
        call.handle(CallerHungUp("caller"))
