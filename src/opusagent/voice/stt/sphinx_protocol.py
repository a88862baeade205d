"""Messages between the loop's process and a decoder process, framed on a byte pipe.

Both ends are this package, so messages are pickled dataclasses behind a 4-byte length.
"""

from __future__ import annotations

import pickle
import struct
from dataclasses import dataclass
from typing import IO

from opusagent.voice.stt.grammar import Grammar
from opusagent.voice.stt.sphinx_model import SphinxModel

_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Load:
    """First message: the model the decoder process loads."""

    model: SphinxModel


@dataclass(frozen=True, slots=True)
class Ready:
    """The decoder is loaded."""

    seconds: float
    """Time to create the decoder."""
    rss_bytes: int | None
    """Resident memory of the decoder process once loaded, where the system tells it."""


@dataclass(frozen=True, slots=True)
class Begin:
    """Start an utterance."""

    cmn: str
    """Cepstral mean to prime the features with (comma-separated)."""
    grammar: Grammar | None
    """None decodes with the generic language model."""


@dataclass(frozen=True, slots=True)
class Step:
    """One job: maybe begin an utterance, decode audio, maybe finish the utterance."""

    audio: bytes
    """PCM16 at 16 kHz, native byte order."""
    begin: Begin | None = None
    finish: bool = False


@dataclass(frozen=True, slots=True)
class Abort:
    """Drop the utterance in progress."""


@dataclass(frozen=True, slots=True)
class Quit:
    """Exit the process."""


@dataclass(frozen=True, slots=True)
class Progress:
    """The hypothesis so far."""

    text: str


@dataclass(frozen=True, slots=True)
class Final:
    """The utterance's result."""

    text: str
    confidence: float | None
    cmn: str
    """Cepstral mean updated with this utterance."""
    fallback: bool
    """The grammar's result was rejected and the generic language model decoded instead."""


@dataclass(frozen=True, slots=True)
class Failed:
    """The request failed; `message` says why."""

    message: str


Request = Load | Step | Abort | Quit
Reply = Ready | Progress | Final | Failed


def write_message(stream: IO[bytes], message: Request | Reply) -> None:
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def read_request(stream: IO[bytes]) -> Request:
    """The next request; EOFError when the other end has gone."""
    message = _read(stream)
    if not isinstance(message, Load | Step | Abort | Quit):
        raise TypeError(f"expected a request, got {type(message).__name__}")
    return message


def read_reply(stream: IO[bytes]) -> Reply:
    """The next reply; EOFError when the other end has gone."""
    message = _read(stream)
    if not isinstance(message, Ready | Progress | Final | Failed):
        raise TypeError(f"expected a reply, got {type(message).__name__}")
    return message


def _read(stream: IO[bytes]) -> object:
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        raise EOFError("decoder pipe closed")
    (length,) = _LENGTH.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        raise EOFError("decoder pipe closed mid-message")
    return pickle.loads(payload)
