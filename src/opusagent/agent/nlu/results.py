"""What a slot parser gives back (re-exported by `opusagent.agent.nlu.slots`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

JsonValue: TypeAlias = "str | int | float | bool | list[JsonValue] | dict[str, JsonValue] | None"


@dataclass(frozen=True, slots=True)
class Parsed:
    """A value found in what the caller said or keyed."""

    value: JsonValue
    """Canonical, JSON-serialisable value (see `slots` for each kind's form)."""
    spoken: str
    """How the agent reads it back for confirmation."""
    text: str
    """The words (or DTMF keys) it came from."""


@dataclass(frozen=True, slots=True)
class Invalid:
    """Something of the right kind that fails validation ("15 digits, need 16")."""

    reason: str
    text: str
