"""Typed events into a Call (from a bridge) and typed outputs from a Call (to a bridge).

A bridge turns its provider's messages into `CallEvent`s and turns `CallOutput`s back into
its provider's messages. Nothing else crosses between a bridge and a Call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from opusagent.audio.formats import AudioChunk, AudioFormat

# --- what the provider told us -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallerAudio:
    """A chunk of the caller's audio, any size, in the call's inbound format."""

    chunk: AudioChunk


@dataclass(frozen=True, slots=True)
class DtmfReceived:
    """One DTMF key pressed by the caller (0-9, *, #, A-D)."""

    digit: str


@dataclass(frozen=True, slots=True)
class MarkAcknowledged:
    """The provider reports that the audio before a mark finished playing (or was cleared)."""

    name: str


CONNECTION_LOST = "socket_closed"
"""End reason when the provider's connection closed without the provider saying the call ended
(a dropped socket, a crashed peer): the call may come back and resume."""


@dataclass(frozen=True, slots=True)
class CallerHungUp:
    """The caller or the provider ended the call."""

    reason: str = "hangup"


@dataclass(frozen=True, slots=True)
class ProviderError:
    """The provider reported an error; fatal errors end the call."""

    message: str
    fatal: bool = False


CallEvent = CallerAudio | DtmfReceived | MarkAcknowledged | CallerHungUp | ProviderError

# --- what we tell the provider -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentAudio:
    """A chunk of agent audio in the call's outbound format, sent when the pacer allows."""

    chunk: AudioChunk
    generation: int


@dataclass(frozen=True, slots=True)
class ClearPlayback:
    """Drop everything the provider has buffered for playback (barge-in)."""

    generation: int


@dataclass(frozen=True, slots=True)
class Mark:
    """Ask the provider to acknowledge when the audio sent so far has played."""

    name: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Hand the caller to a human or another number."""

    target: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call from our side."""

    reason: str = "agent"


@dataclass(frozen=True, slots=True)
class SendDtmf:
    """Play DTMF digits into the call."""

    digits: str


AgentAction = Transfer | HangUp | SendDtmf
"""What an agent may ask the call to do, in order with its speech."""

# --- what we tell the provider about the call, for it to show or log -------------------------
# Notices go out at once, never paced; a bridge whose protocol has no use for one drops it.


@dataclass(frozen=True, slots=True)
class CallerSpeech:
    """Our VAD heard the caller start (True) or stop (False) speaking."""

    started: bool


@dataclass(frozen=True, slots=True)
class CallerTranscript:
    """What our STT heard the caller say: partials may change, a final one does not."""

    text: str
    final: bool
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class AgentText:
    """Words of reply `generation` as they are synthesised (before they play; a cut reply's
    heard words are in the Call's history)."""

    generation: int
    text: str


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """Where the agent is (e.g. the Finite State Agent's state and slots), as it moves."""

    state: str
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReplyLatency:
    """The first audio of reply `generation` went out `seconds` after the caller's input ended."""

    generation: int
    seconds: float


@dataclass(frozen=True, slots=True)
class ReplyAudioEnd:
    """No more audio follows for reply `generation` (it ended; it was not cut off).

    Sent after the reply's last frame (and last mark, on providers with marks); a provider that
    frames replies as streams (AudioCodes `playStream`) closes the stream here.
    """

    generation: int


@dataclass(frozen=True, slots=True)
class StageFailed:
    """A stage failed (`kind`: error, timeout or garbage) and the caller heard the fallback
    line instead, or nothing was lost (a restarted recogniser between utterances)."""

    stage: str
    kind: str
    generation: int


CallNotice = (
    CallerSpeech
    | CallerTranscript
    | AgentText
    | AgentStatus
    | ReplyLatency
    | ReplyAudioEnd
    | StageFailed
)

CallOutput = AgentAudio | ClearPlayback | Mark | AgentAction | CallNotice


@dataclass(frozen=True, slots=True)
class CallMedia:
    """What a bridge negotiated with its provider for one call."""

    inbound: AudioFormat
    outbound: AudioFormat
    marks: bool
    """True when the provider acknowledges marks; otherwise the pacer's clock stands in."""
    frame_ms: int = 20
    """Outbound audio is sent in frames of exactly this many milliseconds."""
