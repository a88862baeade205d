"""What the caller hears when a stage fails: a fallback line, and a hand-off after too many
failures in a row.

A stage fails when it raises, when it takes longer than the turn policy allows (the STT's final
transcript, the agent's next reply part, the synthesiser's audio), or when it returns audio
that is not what it declared. The Call then speaks the agent file's fallback line instead of
going silent, and after `limit` failures in a row it speaks the hand-off line and hands the
call off (a transfer when the agent declares where to, else a hang-up).

The lines are rendered by the call's TTS once per voice, by the first call that needs them,
and kept as outbound frames (`SpokenLines`): a synthesiser that dies mid-call cannot silence
them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from opusagent.audio.formats import AudioFormat
from opusagent.audio.framer import Framer
from opusagent.audio.resample import AudioConverter
from opusagent.call.events import AgentAction, HangUp
from opusagent.call.hangup import aclose
from opusagent.call.stages import TTS

DEFAULT_FALLBACK_SAY = "Sorry, I'm having a little trouble. Could you say that again?"
DEFAULT_GOODBYE_SAY = "I'm sorry, I can't help you right now. Please call again later. Goodbye."
DEFAULT_TRANSFER_SAY = "I'm sorry, I'm having trouble. Let me put you through to a colleague."
DEFAULT_FALLBACK_LIMIT = 3
HANDOFF_REASON = "stage_failures"
RENDER_TIMEOUT_S = 20.0
"""Longest a fixed line may take to render; a synthesiser that cannot is tried again by the
next call."""


@dataclass(frozen=True, slots=True)
class Fallback:
    """The lines a call falls back on, and when it gives up."""

    say: str = DEFAULT_FALLBACK_SAY
    limit: int = DEFAULT_FALLBACK_LIMIT
    """Failures in a row after which the call is handed off; 0: never."""
    handoff_say: str = DEFAULT_GOODBYE_SAY
    handoff: AgentAction = field(default_factory=lambda: HangUp(HANDOFF_REASON))

    @property
    def lines(self) -> tuple[str, ...]:
        """Every line this fallback may speak."""
        return (self.say, self.handoff_say) if self.limit else (self.say,)


@dataclass(frozen=True, slots=True)
class StageFailure:
    """One failure of one stage, as logged and counted."""

    stage: str
    """stt, agent or tts."""
    kind: str
    """error (it raised), timeout (it took too long) or garbage (it returned nonsense)."""
    detail: str

    def __str__(self) -> str:
        return f"{self.stage} {self.kind}: {self.detail}"


@dataclass(frozen=True, slots=True)
class _LineKey:
    text: str
    outbound: AudioFormat
    frame_ms: int


class SpokenLines:
    """Fixed lines kept as outbound frames, shared by the calls of one voice.

    A line is rendered by the first call that asks for it in a given outbound format; every
    later call uses the same frames (no copy per call).
    """

    _by_tts: ClassVar[weakref.WeakKeyDictionary[TTS, SpokenLines]] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._frames: dict[_LineKey, tuple[bytes, ...]] = {}

    @classmethod
    def of(cls, tts: TTS) -> SpokenLines:
        """The lines of the calls that share this synthesiser object (kept while it lives)."""
        try:
            return cls._by_tts.setdefault(tts, cls())
        except TypeError:  # a synthesiser that cannot be weakly referenced shares nothing
            return cls()

    def frames(self, text: str, outbound: AudioFormat, frame_ms: int) -> tuple[bytes, ...] | None:
        """The line's frames, or None when it has not been rendered (yet)."""
        return self._frames.get(_LineKey(text, outbound, frame_ms))

    async def prepare(
        self, tts: TTS, texts: Sequence[str], outbound: AudioFormat, frame_ms: int
    ) -> None:
        """Render the lines not yet held; a line that fails to render is left for later."""
        for text in texts:
            key = _LineKey(text, outbound, frame_ms)
            if text and key not in self._frames:
                async with asyncio.timeout(RENDER_TIMEOUT_S):
                    self._frames[key] = await _render(tts, text, outbound, frame_ms)


async def _render(tts: TTS, text: str, outbound: AudioFormat, frame_ms: int) -> tuple[bytes, ...]:
    converter = AudioConverter(tts.output_format, outbound)
    framer = Framer(outbound, frame_ms)
    frames: list[bytes] = []

    async def words() -> AsyncIterator[str]:
        yield text

    speech = tts.synthesize(words())
    try:
        async for chunk in speech:
            if chunk.audio.format != tts.output_format:
                raise ValueError(
                    f"TTS declared {tts.output_format} but produced {chunk.audio.format}"
                )
            frames.extend(framer.push(converter.to_bytes(chunk.audio.data)))
    finally:
        await aclose(speech)
    frames.extend(framer.push(converter.flush_bytes()))
    last = framer.flush(pad=True)
    if last is not None:
        frames.append(last)
    if not frames:
        raise ValueError(f"TTS produced no audio for {text!r}")
    return tuple(frames)
