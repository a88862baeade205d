"""Slot parsers: a typed value from what the caller said, typed or keyed, with no LLM.

Interface (the Finite State Agent controller codes against exactly this)::

    SlotKind = Literal["digits", "number", "amount", "date", "time", "yes_no", "choice",
                       "phone", "email", "name", "text"]
    SlotRules(kind, min_length=None, max_length=None, options={}, minimum=None,
              maximum=None, currency="USD", pattern=None)
    Parsed(value, spoken, text)    # canonical value, confirmation form, the words it came from
    Invalid(reason, text)          # of the right kind but failing validation
    extract(rules, text, dtmf="", *, today) -> Parsed | Invalid | None
    spoken(rules, value) -> str    # confirmation form of a stored value
    expected_phrases(rules) -> list[str]   # grammar hints for the recogniser

Canonical values (JSON-serialisable, deterministic):

- digits: "4217" (str of digits); phone: digits, "+" and E.164 when a country code is said
- number: int, or float when a fractional part is said ("three point five")
- amount: {"amount": "25.50", "currency": "USD"} (decimal string, ISO 4217 code)
- date: "YYYY-MM-DD" (relative words resolved against `today`, never the clock); time: "HH:MM"
- yes_no: bool; choice: the option key; email: lower case; name: "Title Case"
- text: the text, stripped

`extract` reads `dtmf` first when it is not empty (kinds that take keys: digits, phone,
number, amount, date MMDDYYYY, time HHMM, yes_no 1/2, choice by position), else `text`. In
speech, what follows a self-correction ("four, no, five", "sorry", "i mean", "actually") is
tried first. Validators: `min_length`/`max_length` count digits (digits, phone) or
characters (text); phone numbers have 7 to 15 digits unless told otherwise (E.164 allows
15); `minimum`/`maximum` bound numbers and amounts; `pattern` must fully match the string
form of the value (the "amount" of an amount). The forms each kind understands are listed in
`numbers`, `money`, `dates`, `digits`, `contact` and `answers`.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, NamedTuple

from opusagent.agent.nlu import answers, contact, dates, digits, money
from opusagent.agent.nlu.numbers import cardinal_words, decimal_words, number_runs
from opusagent.agent.nlu.results import Invalid, JsonValue, Parsed
from opusagent.agent.nlu.text import after_correction, tokens
from opusagent.voice.stt.grammar import MAX_DIGITS
from opusagent.voice.stt.grammar import digits as digits_token

__all__ = [
    "Invalid",
    "JsonValue",
    "Parsed",
    "SlotKind",
    "SlotRules",
    "expected_phrases",
    "extract",
    "spoken",
]

SlotKind = Literal[
    "digits",
    "number",
    "amount",
    "date",
    "time",
    "yes_no",
    "choice",
    "phone",
    "email",
    "name",
    "text",
]
PHONE_MIN_DIGITS = 7


@dataclass(frozen=True, slots=True)
class SlotRules:
    """What the agent file says about one slot."""

    kind: SlotKind
    min_length: int | None = None
    """digits/phone: digits; text: characters."""
    max_length: int | None = None
    options: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """choice: option key -> the words that mean it."""
    minimum: float | None = None
    """number/amount."""
    maximum: float | None = None
    currency: str = "USD"
    """amount: ISO 4217 code used when none is said."""
    pattern: str | None = None
    """A regular expression the canonical value must fully match."""


_Parse = Callable[[SlotRules, str, datetime.date], Parsed | Invalid | None]


class _Kind(NamedTuple):
    parse: _Parse
    keyed: _Parse | None
    speak: Callable[[SlotRules, JsonValue], str]
    phrases: Callable[[SlotRules], list[str]]


def _str(value: JsonValue, kind: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"a {kind} value is a string, not {value!r}")
    return value


def _parse_number(text: str) -> Parsed | None:
    words = tokens(text)
    run = next((r for r in number_runs(words) if not r.ordinal), None)
    if run is None:
        return None
    value: int | float = int(run.value) if run.fraction is None else float(run.value)
    return Parsed(value, _speak_number(value), " ".join(words[run.start : run.end]))


def _parse_keyed_number(keys: str) -> Parsed | None:
    entry = keys.rstrip("#").replace("*", ".")
    if not re.fullmatch(r"\d+(?:\.\d+)?", entry):
        return None
    value: int | float = float(entry) if "." in entry else int(entry)
    return Parsed(value, _speak_number(value), keys)


def _speak_number(value: JsonValue) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"a number value is an int or a float, not {value!r}")
    if isinstance(value, int):
        return cardinal_words(value)
    return decimal_words(Decimal(repr(value)))


def _amount(value: JsonValue) -> tuple[Decimal, str]:
    if not isinstance(value, dict):
        raise TypeError(f"an amount value is {{'amount', 'currency'}}, not {value!r}")
    return Decimal(_str(value["amount"], "amount")), _str(value["currency"], "currency")


def _speak_time(value: JsonValue) -> str:
    hour, minute = _str(value, "time").split(":")
    return dates.speak_time(int(hour), int(minute))


def _speak_yes_no(value: JsonValue) -> str:
    if not isinstance(value, bool):
        raise TypeError(f"a yes_no value is a bool, not {value!r}")
    return answers.speak_yes_no(value)


def _speak_choice(rules: SlotRules, value: JsonValue) -> str:
    key = _str(value, "choice")
    if key not in rules.options:
        raise ValueError(f"{key!r} is not one of the options {list(rules.options)}")
    return answers.speak_option(key, rules.options[key])


def _digit_phrases(rules: SlotRules, least: int, most: int | None) -> list[str]:
    low = rules.min_length or least
    high = rules.max_length or most
    if high is None:
        return [digits_token(low, MAX_DIGITS) if rules.min_length else digits_token()]
    return [digits_token(min(low, MAX_DIGITS), min(max(low, high), MAX_DIGITS))]


def _no_phrases(rules: SlotRules) -> list[str]:
    """Open-ended answers: no grammar, the recogniser's language model listens."""
    return []


_KINDS: dict[str, _Kind] = {
    "digits": _Kind(
        lambda r, t, d: digits.parse_digits(t),
        lambda r, k, d: digits.parse_keyed_digits(k),
        lambda r, v: digits.speak_digits(_str(v, "digits")),
        lambda r: _digit_phrases(r, 1, None),
    ),
    "phone": _Kind(
        lambda r, t, d: digits.parse_phone(t),
        lambda r, k, d: digits.parse_keyed_phone(k),
        lambda r, v: digits.speak_phone(_str(v, "phone")),
        lambda r: [
            p
            for token in _digit_phrases(r, PHONE_MIN_DIGITS, digits.E164_MAX_DIGITS)
            for p in (token, "plus " + token)
        ],
    ),
    "number": _Kind(
        lambda r, t, d: _parse_number(t),
        lambda r, k, d: _parse_keyed_number(k),
        lambda r, v: _speak_number(v),
        _no_phrases,
    ),
    "amount": _Kind(
        lambda r, t, d: money.parse_amount(t, r.currency),
        lambda r, k, d: money.parse_keyed_amount(k, r.currency),
        lambda r, v: money.speak_amount(*_amount(v)),
        _no_phrases,
    ),
    "date": _Kind(
        lambda r, t, d: dates.parse_date(t, d),
        lambda r, k, d: dates.parse_keyed_date(k, d),
        lambda r, v: dates.speak_date(datetime.date.fromisoformat(_str(v, "date"))),
        _no_phrases,
    ),
    "time": _Kind(
        lambda r, t, d: dates.parse_time(t),
        lambda r, k, d: dates.parse_keyed_time(k),
        lambda r, v: _speak_time(v),
        _no_phrases,
    ),
    "yes_no": _Kind(
        lambda r, t, d: answers.parse_yes_no(t),
        lambda r, k, d: answers.parse_keyed_yes_no(k),
        lambda r, v: _speak_yes_no(v),
        lambda r: [*answers.YES_PHRASES, *answers.NO_PHRASES],
    ),
    "choice": _Kind(
        lambda r, t, d: answers.parse_choice(t, r.options),
        lambda r, k, d: answers.parse_keyed_choice(k, r.options),
        _speak_choice,
        lambda r: [p for key, syn in r.options.items() for p in answers.option_phrases(key, syn)],
    ),
    "email": _Kind(
        lambda r, t, d: contact.parse_email(t),
        None,
        lambda r, v: contact.speak_email(_str(v, "email")),
        _no_phrases,
    ),
    "name": _Kind(
        lambda r, t, d: contact.parse_name(t),
        None,
        lambda r, v: _str(v, "name"),
        _no_phrases,
    ),
    "text": _Kind(
        lambda r, t, d: Parsed(t.strip(), t.strip(), t.strip()) if t.strip() else None,
        None,
        lambda r, v: _str(v, "text"),
        _no_phrases,
    ),
}
_NO_CORRECTIONS = frozenset({"yes_no", "text"})


def _count(found: int, least: int | None, most: int | None, unit: str) -> str | None:
    """Why `found` units are not between `least` and `most`, or None when they are."""
    if least is not None and most is not None and found not in range(least, most + 1):
        need = f"{least}" if least == most else f"{least} to {most}"
        return f"{found} {unit}, need {need}"
    if least is not None and found < least:
        return f"{found} {unit}, need at least {least}"
    if most is not None and found > most:
        return f"{found} {unit}, need at most {most}"
    return None


def _bounds(number: Decimal, rules: SlotRules) -> str | None:
    if rules.minimum is not None and number < Decimal(repr(rules.minimum)):
        return f"{number} is less than the minimum {rules.minimum:g}"
    if rules.maximum is not None and number > Decimal(repr(rules.maximum)):
        return f"{number} is more than the maximum {rules.maximum:g}"
    return None


def _problem(rules: SlotRules, value: JsonValue) -> str | None:
    """What is wrong with a parsed value under `rules`, or None."""
    kind = rules.kind
    if kind == "digits" and isinstance(value, str):
        problem = _count(len(value), rules.min_length, rules.max_length, "digits")
    elif kind == "phone" and isinstance(value, str):
        least = rules.min_length or PHONE_MIN_DIGITS
        most = min(rules.max_length or digits.E164_MAX_DIGITS, digits.E164_MAX_DIGITS)
        problem = _count(len(value.lstrip("+")), least, most, "digits")
    elif kind == "text" and isinstance(value, str):
        problem = _count(len(value), rules.min_length, rules.max_length, "characters")
    elif kind == "number" and isinstance(value, int | float):
        problem = _bounds(Decimal(repr(value)), rules)
    elif kind == "amount":
        problem = _bounds(_amount(value)[0], rules)
    else:
        problem = None
    if problem is None and rules.pattern is not None:
        form = value["amount"] if isinstance(value, dict) else value
        scalar = isinstance(form, str | int | float) and not isinstance(form, bool)
        if scalar and re.fullmatch(rules.pattern, str(form)) is None:
            problem = f"{form} is not in the expected format"
    return problem


def extract(
    rules: SlotRules, text: str, dtmf: str = "", *, today: datetime.date
) -> Parsed | Invalid | None:
    """The slot's value in what the caller keyed (`dtmf`) or said (`text`).

    None when there is nothing of the slot's kind; `Invalid` when there is, but it fails a
    validator (the reason is short enough to tell the caller).
    """
    kind = _KINDS[rules.kind]
    found: Parsed | Invalid | None = None
    if dtmf.strip() and kind.keyed is not None:
        found = kind.keyed(rules, dtmf.strip(), today)
    elif text.strip():
        corrected = after_correction(text) if rules.kind not in _NO_CORRECTIONS else None
        if corrected is not None:
            found = kind.parse(rules, corrected, today)
        if found is None:
            found = kind.parse(rules, text, today)
    if isinstance(found, Parsed):
        problem = _problem(rules, found.value)
        if problem is not None:
            return Invalid(problem, found.text)
    return found


def spoken(rules: SlotRules, value: JsonValue) -> str:
    """How the agent reads back a stored value of this slot ("four two one seven")."""
    return _KINDS[rules.kind].speak(rules, value)


def expected_phrases(rules: SlotRules) -> list[str]:
    """What the caller is likely to say, as recogniser grammar phrases.

    Choice: each option's key and synonyms; yes/no: the common answers; digits and phone:
    a `<digits:...>` token of `opusagent.voice.stt.grammar`. [] for open-ended kinds.
    """
    return _KINDS[rules.kind].phrases(rules)
