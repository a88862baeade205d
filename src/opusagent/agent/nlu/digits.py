"""Strings of digits (card numbers, PINs, account numbers) and phone numbers.

Spoken digits come one by one ("four two one seven", "oh" for zero, "double five"), in
pairs ("forty two seventeen") or typed ("4217", "4217-1234", "(555) 123-4567"); "dash",
"hyphen" and "space" between them are ignored. The longest stretch of digits in the
utterance is taken (the last of equally long ones): in "four my account it's four two one
seven" (a recogniser's "four" for "for") that is 4217. Keypad entries are read as they are,
"#" ending the entry and "*" ignored.

A phone number said or typed after "plus" / "+" (or "country code") is kept in E.164 form,
"+" and up to 15 digits (ITU-T E.164, https://www.itu.int/rec/T-REC-E.164); otherwise it is
the digits as dialled.
"""

from __future__ import annotations

from opusagent.agent.nlu.numbers import NumberRun, digit_words, number_runs
from opusagent.agent.nlu.results import Parsed
from opusagent.agent.nlu.text import tokens

_SEPARATORS = frozenset({"dash", "hyphen", "space"})
_PLUS = (("+",), ("plus",), ("country", "code"))
E164_MAX_DIGITS = 15


def group_sizes(count: int) -> list[int]:
    """How digits are grouped when read back: 4 or fewer at once; in fours when they split
    evenly (cards: 4 4 4 4); else in threes, a last digit joining the group before it
    (phone numbers: 3 3 4)."""
    if count <= 4:
        return [count] if count else []
    if count % 4 == 0:
        return [4] * (count // 4)
    sizes = [3] * (count // 3)
    if count % 3 == 1:
        sizes[-1] += 1
    elif count % 3 == 2:
        sizes.append(2)
    return sizes


def speak_digits(digits: str) -> str:
    """ "4217" -> "four two one seven"; longer strings in groups separated by commas."""
    groups, start = [], 0
    for size in group_sizes(len(digits)):
        groups.append(digit_words(digits[start : start + size]))
        start += size
    return ", ".join(groups)


def _longest_run(text: str) -> tuple[NumberRun, list[str]] | None:
    words = [w for w in tokens(text) if w not in _SEPARATORS]
    runs = [r for r in number_runs(words) if not r.negative and not r.ordinal]
    if not runs:
        return None
    longest = max(
        reversed(runs), key=lambda r: len(r.digits) + len(r.fraction or "")
    )  # max keeps the first of equals: reversed, that is the last said
    return longest, words


def parse_digits(text: str) -> Parsed | None:
    """The digit string in `text`."""
    found = _longest_run(text)
    if found is None:
        return None
    run, words = found
    digits = run.digits + (run.fraction or "")
    return Parsed(digits, speak_digits(digits), " ".join(words[run.start : run.end]))


def keyed_digits(keys: str) -> str:
    """The digits of a keypad entry."""
    return "".join(k for k in keys if k.isdigit())


def parse_keyed_digits(keys: str) -> Parsed | None:
    digits = keyed_digits(keys)
    return Parsed(digits, speak_digits(digits), keys) if digits else None


def speak_phone(number: str) -> str:
    """ "+15551234567" -> "plus one, five five five, one two three, four five six seven"."""
    if not number.startswith("+"):
        return speak_digits(number)
    digits = number[1:]
    if digits.startswith("1") and len(digits) == 11:  # North American Numbering Plan
        return "plus one, " + speak_digits(digits[1:])
    return "plus " + speak_digits(digits)


def parse_phone(text: str) -> Parsed | None:
    """The phone number in `text`; E.164 ("+...") when a country code is said."""
    found = _longest_run(text)
    if found is None:
        return None
    run, words = found
    start = run.start
    for marker in _PLUS:
        if tuple(words[max(run.start - len(marker), 0) : run.start]) == marker:
            start = run.start - len(marker)
    number = ("+" if start < run.start else "") + run.digits
    return Parsed(number, speak_phone(number), " ".join(words[start : run.end]))


def parse_keyed_phone(keys: str) -> Parsed | None:
    digits = keyed_digits(keys)
    return Parsed(digits, speak_phone(digits), keys) if digits else None
