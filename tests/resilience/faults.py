"""Stages that fail on cue: each wraps a working stage and breaks on the turns a test names, so
a call can be checked for what the caller hears then, and for the next turn working again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Literal

from bridges.loopback import CountingStream
from opusagent.audio.formats import AudioChunk, AudioFormat, Encoding
from opusagent.call.stages import (
    TTS,
    Agent,
    ReplyPart,
    SpeechChunk,
    STTStream,
    Transcript,
    UserTurn,
)
from opusagent.testing import ScriptedSTT, Utterance

Fault = Literal["raise", "hang", "garbage"]


class BrokenStageError(RuntimeError):
    """What a faulty stage raises."""


async def hang() -> None:
    """Wait for ever (until cancelled): a stage that stopped answering."""
    await asyncio.Event().wait()


class FaultyAgent:
    """`inner`, except on the turns `breaks(turn)` picks: then it raises or hangs before
    saying anything."""

    def __init__(self, inner: Agent, fault: Fault, breaks: Callable[[UserTurn], bool]) -> None:
        self._inner = inner
        self._fault = fault
        self._breaks = breaks
        self.broken = 0

    async def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        if self._breaks(turn):
            self.broken += 1
            if self._fault == "hang":
                await hang()
            raise BrokenStageError(f"the agent broke on {turn.text!r}")
        async for part in self._inner.respond(turn):
            yield part


class FaultyTTS:
    """`inner`, except for text containing `trigger`: then it raises, hangs, or produces audio
    in another format than it declared (garbage), once it has read that text. It breaks once
    and works again, or with `dies` breaks on every text from then on; setting `dead` kills it
    at once."""

    def __init__(
        self, inner: TTS, fault: Fault, trigger: str | None = None, *, dies: bool = False
    ) -> None:
        self._inner = inner
        self._fault = fault
        self._trigger = trigger
        self._dies = dies
        self._broke = False
        self.dead = False

    @property
    def output_format(self) -> AudioFormat:
        return self._inner.output_format

    async def prerender(self, texts: Sequence[str]) -> None:
        await self._inner.prerender(texts)

    async def synthesize(self, text: AsyncIterator[str]) -> AsyncIterator[SpeechChunk]:
        parts = [part async for part in text]
        spoken = "".join(parts)
        triggered = self._trigger is not None and self._trigger in spoken
        if self.dead or (triggered and not self._broke):
            self._broke = True
            self.dead = self.dead or self._dies
            if self._fault == "raise":
                raise BrokenStageError("the synthesiser broke")
            if self._fault == "hang":
                await hang()
            wrong = AudioFormat(Encoding.MULAW, 8000)
            yield SpeechChunk(AudioChunk(b"\x00" * 1600, wrong), spoken)
            return

        async def again() -> AsyncIterator[str]:
            for part in parts:
                yield part

        async for chunk in self._inner.synthesize(again()):
            yield chunk


class _FaultyStream(CountingStream):
    """Counts like `CountingStream`; its results break on the owner's trigger."""

    def __init__(self, inner: STTStream, owner: FaultySTT) -> None:
        super().__init__(inner, owner)
        self._owner = owner

    async def results(self) -> AsyncIterator[Transcript]:
        async for transcript in self._inner.results():
            if self._owner.trigger in transcript.text:
                if self._owner.fault == "raise":
                    raise BrokenStageError("the recogniser broke")
                continue  # "hang": the words never come out
            yield transcript


class FaultySTT:
    """A scripted recogniser that breaks on the utterance containing `trigger`: its stream
    raises as soon as it hears it, or never delivers its words (hang). A stream opened after
    the first one hears the script from where the call is (a restarted recogniser)."""

    def __init__(self, script: Sequence[Utterance], fault: Fault, trigger: str) -> None:
        self._script = tuple(script)
        self.fault = fault
        self.trigger = trigger
        self.samples = 0
        self.opened = 0

    @property
    def input_format(self) -> AudioFormat:
        return AudioFormat(Encoding.PCM16, 16000)

    def open_stream(self) -> _FaultyStream:
        self.opened += 1
        now = self.samples / self.input_format.sample_rate
        rest = [
            Utterance(u.start - now, u.end - now, u.text) for u in self._script if u.start >= now
        ]
        return _FaultyStream(ScriptedSTT(rest).open_stream(), self)
