"""The stage protocols a Call drives: VAD, STT, Agent and TTS.

Stages are streaming and know nothing of providers or bridges. Audio between the Call and the
listening stages (VAD, STT) is mono signed 16-bit PCM as numpy arrays at the rate the stage
declares; audio from TTS carries its own `AudioFormat`.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from opusagent.audio.formats import AudioChunk, AudioFormat
from opusagent.call.events import AgentAction, AgentStatus

Samples = npt.NDArray[np.int16]
"""Mono signed 16-bit PCM samples."""

VadCallback = Callable[[float, float], None]
"""Called with (speech probability 0..1, stream time in seconds at the end of the window)."""


class VADStream(Protocol):
    """One call's voice activity detector state."""

    def push(self, samples: Samples) -> None:
        """Add audio at the VAD's sample rate; results arrive through the stream's callback."""

    def close(self) -> None:
        """Stop detecting; no callback fires after this returns."""


class VAD(Protocol):
    """Voice activity detection shared by all calls of a process."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def window_seconds(self) -> float:
        """Length of audio behind one probability."""
        ...

    def open_stream(self, on_result: VadCallback) -> VADStream: ...


@dataclass(frozen=True, slots=True)
class Transcript:
    """A recognition result: partial results may change, a final one does not."""

    text: str
    final: bool
    confidence: float | None = None


class STTStream(Protocol):
    """One call's speech recogniser session."""

    def push(self, samples: Samples) -> None:
        """Add audio at the STT's input rate (called for every inbound frame)."""

    def speech_started(self) -> None:
        """The VAD heard speech start; a recogniser may gate on this."""

    def speech_ended(self) -> None:
        """The VAD heard the utterance end; a final result for it should follow soon."""

    def expect(self, phrases: Sequence[str] | None) -> None:
        """Phrases the caller is likely to say next (a menu, yes/no, digits): a grammar hint
        for the following utterances. None means free speech."""

    def results(self) -> AsyncIterator[Transcript]:
        """Partials and finals, in order, until the stream is closed."""
        ...

    async def aclose(self) -> None: ...


class STT(Protocol):
    """A speech recogniser; one stream per call."""

    @property
    def input_format(self) -> AudioFormat: ...

    def open_stream(self) -> STTStream: ...


class TurnKind(enum.StrEnum):
    """Why the agent is asked to respond."""

    START = "start"  # the call began: greet
    SPEECH = "speech"  # the caller finished speaking
    DTMF = "dtmf"  # the caller entered digits
    NO_INPUT = "no_input"  # the caller said nothing for the no-input timeout
    HANGUP = "hangup"  # the call ended (text: why); the agent may record it, its reply never plays


class Speaker(enum.StrEnum):
    CALLER = "caller"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One line of the conversation as the caller experienced it."""

    speaker: Speaker
    text: str
    """For the agent: only the words the caller heard."""
    dtmf: str = ""
    """For the caller: digits entered in this turn."""
    overlapped: bool = False
    """For the caller: said over the agent (a backchannel) without taking the turn."""
    interrupted: bool = False
    generated: str = ""
    """For the agent: everything generated for this reply, heard or not."""


@dataclass(frozen=True, slots=True)
class UserTurn:
    """What the agent is asked to respond to."""

    kind: TurnKind
    text: str = ""
    dtmf: str = ""
    history: tuple[HistoryEntry, ...] = field(default=())
    generation: int = 0


@dataclass(frozen=True, slots=True)
class ExpectSpeech:
    """What the caller is likely to say next (a grammar hint for the STT); None: free speech."""

    phrases: tuple[str, ...] | None


ReplyPart = str | AgentAction | AgentStatus | ExpectSpeech
"""An agent reply streams text deltas to speak, actions to take after what precedes them, and
status updates and listening hints that take effect at once."""


class Agent(Protocol):
    """Decides what to say and do for each user turn."""

    def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]: ...


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """Synthesised audio and the words it speaks ("" when it continues the previous words)."""

    audio: AudioChunk
    text: str


class TTS(Protocol):
    """Speech synthesis: a stream of text in, a stream of audio out."""

    @property
    def output_format(self) -> AudioFormat: ...

    def synthesize(self, text: AsyncIterator[str]) -> AsyncIterator[SpeechChunk]: ...

    async def prerender(self, texts: Sequence[str]) -> None:
        """Synthesise texts known in advance (fixed prompts) so speaking them later is instant."""
