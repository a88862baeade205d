"""Provider text frames holding one JSON object, read into the provider's pydantic messages.

Every failure is an `InvalidMessageError` that says what was wrong, for the session to log and
ignore.
"""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from opusagent.bridges.session import InvalidMessageError

T = TypeVar("T")


def json_object(text: str) -> dict[str, Any]:
    """The JSON object in `text`."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidMessageError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidMessageError(f"not a JSON object: {text[:80]!r}")
    return raw


def validate(adapter: TypeAdapter[T], raw: dict[str, Any], name: str) -> T:
    """`raw` as the message `name` it claims to be (the tag of a discriminated union)."""
    try:
        return adapter.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(_problem(e["loc"], e["msg"], name) for e in exc.errors())
        raise InvalidMessageError(f"{name}: {problems}") from None


def _problem(loc: tuple[int | str, ...], msg: str, name: str) -> str:
    """`field.path: message`, without the union tag a discriminated union puts first."""
    if loc and str(loc[0]).lower() == name.lower():
        loc = loc[1:]
    return f"{'.'.join(str(part) for part in loc)}: {msg}"


def parse_event(
    text: str, adapter: TypeAdapter[T], events: frozenset[str], *, key: str = "event"
) -> T:
    """The message in `text`, whose `key` names one of `events` (the union `adapter` reads,
    discriminated by `key`)."""
    raw = json_object(text)
    event = raw.get(key)
    if not isinstance(event, str) or event not in events:
        raise InvalidMessageError(f"unknown {key} {event!r:.80}")
    return validate(adapter, raw, event)


def base64_audio(data: str, what: str) -> bytes:
    """The bytes of a base64 audio field (`what` names it in the error)."""
    try:
        return base64.b64decode(data, validate=True)
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        raise InvalidMessageError(f"{what} is not base64 ({exc})") from None
