"""Instant or delayed fake stages for scripted calls.

They implement the stage protocols exactly as real stages do, so a Call cannot tell them
apart; they only replace models with arithmetic and a script.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import numpy as np

from opusagent.audio.formats import AudioChunk, AudioFormat, Encoding
from opusagent.call.stages import (
    ReplyPart,
    Samples,
    SpeechChunk,
    Transcript,
    UserTurn,
    VadCallback,
)

LISTEN_RATE = 16000


class _EnergyStream:
    def __init__(self, window: int, threshold: float, on_result: VadCallback) -> None:
        self._window = window
        self._threshold_sq = threshold * threshold
        self._on_result: VadCallback | None = on_result
        self._buffer = np.zeros(window, dtype=np.int16)
        self._filled = 0
        self._windows = 0

    def push(self, samples: Samples) -> None:
        offset = 0
        while offset < len(samples) and self._on_result is not None:
            take = min(self._window - self._filled, len(samples) - offset)
            self._buffer[self._filled : self._filled + take] = samples[offset : offset + take]
            self._filled += take
            offset += take
            if self._filled == self._window:
                self._filled = 0
                self._windows += 1
                energy = float(np.mean(np.square(self._buffer, dtype=np.float64)))
                speech = 1.0 if energy >= self._threshold_sq else 0.0
                self._on_result(speech, self._windows * self._window / LISTEN_RATE)

    def close(self) -> None:
        self._on_result = None


class FakeVAD:
    """Calls a window speech when its RMS reaches `threshold`; answers at once."""

    def __init__(self, window_s: float = 0.02, threshold: float = 500.0) -> None:
        self._window = round(window_s * LISTEN_RATE)
        self._threshold = threshold

    @property
    def sample_rate(self) -> int:
        return LISTEN_RATE

    @property
    def window_seconds(self) -> float:
        return self._window / LISTEN_RATE

    def open_stream(self, on_result: VadCallback) -> _EnergyStream:
        return _EnergyStream(self._window, self._threshold, on_result)

    async def aclose(self) -> None:
        """Nothing to release (a drop-in for the process's VAD in a served app)."""


@dataclass(frozen=True, slots=True)
class Utterance:
    """What the caller says, from `start` to `end` seconds of caller audio."""

    start: float
    end: float
    text: str


class _ScriptedSTTStream:
    def __init__(self, script: Sequence[Utterance], final_delay_s: float) -> None:
        self._script = sorted(script, key=lambda u: u.start)
        self._final_delay_s = final_delay_s
        self._queue: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._samples = 0
        self._next = 0  # first utterance not yet finalised
        self._last_partial = ""
        self._closed = False

    @property
    def _now_s(self) -> float:
        return self._samples / LISTEN_RATE

    def push(self, samples: Samples) -> None:
        self._samples += len(samples)
        partial = self._heard_so_far()
        if partial and partial != self._last_partial:
            self._last_partial = partial
            self._queue.put_nowait(Transcript(partial, final=False))

    def _heard_so_far(self) -> str:
        """Words already spoken, revealed evenly over each utterance's duration."""
        now = self._now_s
        words: list[str] = []
        for utterance in self._script[self._next :]:
            if utterance.start >= now:
                break
            all_words = utterance.text.split()
            progress = min(
                1.0, (now - utterance.start) / max(utterance.end - utterance.start, 1e-9)
            )
            words.extend(all_words[: math.floor(len(all_words) * progress + 1e-9)])
        return " ".join(words)

    def speech_started(self) -> None:
        """Nothing to gate: the script knows what was said."""

    def expect(self, phrases: Sequence[str] | None) -> None:
        """The script is exact; hints change nothing."""

    def speech_ended(self) -> None:
        now = self._now_s
        texts = []
        while self._next < len(self._script) and self._script[self._next].start < now:
            texts.append(self._script[self._next].text)
            self._next += 1
        self._last_partial = ""
        final = Transcript(" ".join(texts), final=True, confidence=1.0)
        asyncio.get_running_loop().call_later(self._final_delay_s, self._put, final)

    def _put(self, transcript: Transcript) -> None:
        if not self._closed:
            self._queue.put_nowait(transcript)

    async def results(self) -> AsyncIterator[Transcript]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def aclose(self) -> None:
        self._closed = True
        self._queue.put_nowait(None)


class ScriptedSTT:
    """Recognises exactly the scripted utterances: partials as they are spoken, a final after
    `final_delay_s` once the VAD reports the end of speech."""

    def __init__(self, script: Sequence[Utterance], final_delay_s: float = 0.0) -> None:
        self._script = tuple(script)
        self._final_delay_s = final_delay_s

    @property
    def input_format(self) -> AudioFormat:
        return AudioFormat(Encoding.PCM16, LISTEN_RATE)

    def open_stream(self) -> _ScriptedSTTStream:
        return _ScriptedSTTStream(self._script, self._final_delay_s)


ReplyScript = Callable[[UserTurn], Sequence[ReplyPart] | str]


class ScriptedAgent:
    """Answers each turn from a function of the turn; records every turn it was given, unless
    `record_turns` is off (a long load test: each turn holds the whole history so far)."""

    def __init__(
        self, script: ReplyScript, *, part_delay_s: float = 0.0, record_turns: bool = True
    ) -> None:
        self._script = script
        self._part_delay_s = part_delay_s
        self._record_turns = record_turns
        self.turns: list[UserTurn] = []

    async def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        if self._record_turns:
            self.turns.append(turn)
        reply = self._script(turn)
        for part in [reply] if isinstance(reply, str) else reply:
            if self._part_delay_s:
                await asyncio.sleep(self._part_delay_s)
            yield part


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class FakeTTS:
    """Speaks each sentence as a tone lasting `seconds_per_word` per word, after `latency_s`.

    Audio comes in chunks of at most `chunk_s`; the sentence's text rides on its first chunk.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 22050,
        seconds_per_word: float = 0.3,
        chunk_s: float = 0.5,
        latency_s: float = 0.0,
    ) -> None:
        self._format = AudioFormat(Encoding.PCM16, sample_rate)
        self._seconds_per_word = seconds_per_word
        self._chunk = max(1, round(chunk_s * sample_rate))
        self._latency_s = latency_s

    @property
    def output_format(self) -> AudioFormat:
        return self._format

    async def synthesize(self, text: AsyncIterator[str]) -> AsyncIterator[SpeechChunk]:
        buffered = ""
        async for delta in text:
            buffered += delta
            *sentences, buffered = _SENTENCE_END.split(buffered)
            for sentence in sentences:
                async for chunk in self._speak(sentence):
                    yield chunk
        if buffered.strip():
            async for chunk in self._speak(buffered):
                yield chunk

    async def prerender(self, texts: Sequence[str]) -> None:
        """Fake speech costs nothing to make; there is nothing to prepare."""

    async def _speak(self, sentence: str) -> AsyncIterator[SpeechChunk]:
        words = sentence.split()
        if not words:
            return
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        rate = self._format.sample_rate
        total = round(len(words) * self._seconds_per_word * rate)
        tone = (3000 * np.sin(2 * np.pi * 440 * np.arange(total) / rate)).astype("<i2")
        for offset in range(0, total, self._chunk):
            data = tone[offset : offset + self._chunk].tobytes()
            yield SpeechChunk(AudioChunk(data, self._format), sentence if offset == 0 else "")
