"""The provider's side of a bridge, for `opusagent dial`, the load tool and the contract tests.

A `FarEnd` knows one provider's messages as that provider sends and receives them; the dialler
(`opusagent.bridges.dial`) does the rest alike for every provider: it connects, paces caller
audio in real time, plays the agent's audio on a playout clock, acknowledges markers when their
audio has played, honours clears, and records everything it heard.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from opusagent.audio.formats import AudioFormat
from opusagent.bridges.session import Frame


@dataclass(frozen=True, slots=True)
class Play:
    """Agent audio to queue for playout, in the far end's `audio_format`."""

    data: bytes


@dataclass(frozen=True, slots=True)
class PlayMarker:
    """Acknowledge `token` once everything queued before it has played (or was cleared)."""

    token: str


@dataclass(frozen=True, slots=True)
class Clear:
    """Drop the queued audio; pending markers are acknowledged at once."""


@dataclass(frozen=True, slots=True)
class Send:
    """Answer the server right away (a handshake step, a protocol-required reply)."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Ready:
    """The server accepted the stream: caller audio may flow."""


@dataclass(frozen=True, slots=True)
class Heard:
    """Something the server told the far end that a person would want to see (a transcript, a
    state change, a transfer, digits, a hang-up request)."""

    kind: str
    text: str
    detail: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ended:
    """The server ended the call (the dialler then closes the socket)."""

    reason: str


Reaction = Play | PlayMarker | Clear | Send | Ready | Heard | Ended


class FarEnd(Protocol):
    """One provider's side of one call."""

    @property
    def audio_format(self) -> AudioFormat:
        """The format of the caller audio it sends and of the agent audio it plays."""
        ...

    @property
    def frame_ms(self) -> int:
        """Duration of each caller audio message."""
        ...

    @property
    def waits_for_ready(self) -> bool:
        """True when caller audio must wait for a `Ready` from the server (a handshake)."""
        ...

    def headers(self) -> Mapping[str, str]:
        """Headers of the WebSocket upgrade request (authentication, signatures)."""
        ...

    def opening(self) -> list[Frame]:
        """Frames sent as soon as the socket is open."""
        ...

    def audio(self, data: bytes) -> Frame:
        """The message carrying one `frame_ms` frame of caller audio."""
        ...

    def dtmf(self, digit: str) -> list[Frame]:
        """The messages for one key press."""
        ...

    def hangup(self) -> list[Frame]:
        """The messages the provider sends when the caller hangs up (before closing)."""
        ...

    def marker_played(self, token: str) -> Frame | None:
        """The acknowledgement of a marker whose audio has played, if the protocol has one."""
        ...

    def receive(self, frame: Frame) -> list[Reaction]:
        """What to do about one frame from the server."""
        ...

    def resumed(self) -> FarEnd:
        """The same call reconnecting after its connection was lost (a new socket carrying
        the same call id, as the provider does); ValueError where the protocol cannot."""
        ...
