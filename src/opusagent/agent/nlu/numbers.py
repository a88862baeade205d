"""Numbers as people say and type them, and numbers back into words.

A *run* is a stretch of number words or numerals in an utterance. It is read as a list of
*groups*, each a number on its own: "twenty five" is one group (25); "four two one seven" is
four (4, 2, 1, 7); "twenty twenty six" two (20, 26); "one oh five" three (1, 0, 5). A new
group starts wherever a word cannot continue the number before it (a unit after a unit, a
tens word after a unit...). Glued together the groups are what was meant in a digit string,
a year or a price ("nineteen ninety nine" -> "1999"); the parsers that need the groups
apart (times: "nine oh five", prices: "twenty five fifty") read them one by one.

Understood: "zero".."nineteen", the tens, "hundred", "thousand", "million", "billion",
"a hundred", "one hundred and five", "oh" for zero next to other digits, "double five" and
"triple seven", "point" decimals ("three point one four"), "minus", ordinals ("third",
"twenty first", "3rd"), and numerals ("4217", "1,234.50").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

UNITS = {
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
ZEROS = frozenset({"zero", "oh", "nought"})
_CARDINALS = {**UNITS, **TEENS, **TENS}
_IRREGULAR_ORDINALS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
ORDINALS = {
    (_IRREGULAR_ORDINALS.get(w) or (w[:-1] + "ieth" if w.endswith("y") else w + "th")): v
    for w, v in _CARDINALS.items()
}
_REPEATS = {"double": 2, "triple": 3}
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_ORDINAL_SUFFIXES = ("st", "nd", "rd", "th")


@dataclass(frozen=True, slots=True)
class NumberRun:
    """A stretch of number words in a token list: tokens[start:end]."""

    start: int
    end: int
    groups: tuple[str, ...]
    """Each group's digits ("25", "0", "2026"), in order."""
    fraction: str | None
    """Digits after "point" or a decimal point; None when there is none."""
    negative: bool
    ordinal: bool
    """The run ends in an ordinal ("twenty third", "3rd")."""

    @property
    def digits(self) -> str:
        """The groups glued together: "four two one seven" -> "4217"."""
        return "".join(self.groups)

    @property
    def value(self) -> Decimal:
        number = Decimal(self.digits + ("." + self.fraction if self.fraction else ""))
        return -number if self.negative else number


def _is_digit_word(token: str) -> bool:
    return token in UNITS or token in ZEROS


def _numeral(token: str) -> tuple[str, str | None, bool] | None:
    """A typed number: (integer digits, fraction digits, ordinal) or None."""
    ordinal = token.endswith(_ORDINAL_SUFFIXES) and token[:-2].isdigit()
    body = token[:-2] if ordinal else token
    if not body or not body[0].isdigit():
        return None
    whole, _, fraction = body.partition(".") if body.count(".") == 1 else (body, "", "")
    whole = whole.replace(",", "")
    if not whole.isdigit() or (fraction and not fraction.isdigit()):
        return None
    return whole, fraction or None, ordinal


class _Reader:
    """Reads one run, word by word (see the module docstring)."""

    def __init__(self) -> None:
        self.groups: list[str] = []
        self.fraction: list[str] | None = None
        self.total = 0
        self.chunk = 0
        self.last: str | None = None  # kind of the previous word in the current group
        self.scale: int | None = None  # smallest scale used in the current group
        self.repeat = 1
        self.done = False
        self.ordinal = False

    def _target(self) -> list[str]:
        return self.groups if self.fraction is None else self.fraction

    def close(self) -> None:
        if self.last is not None and self.last != "zero":
            self._target().append(str(self.total + self.chunk))
        self.total = self.chunk = 0
        self.last = None
        self.scale = None

    def _start(self, value: int, kind: str) -> None:
        self.close()
        self.chunk = value
        self.last = kind

    def feed(self, token: str, following: str | None) -> bool:
        """Take `token` into the run; False when it does not belong to it."""
        if self.done:
            return False
        numeral = _numeral(token)
        if numeral is not None:
            whole, fraction, ordinal = numeral
            self.close()
            self._target().append(whole)
            if fraction is not None and self.fraction is None:
                self.fraction = [fraction]
                self.done = True
            self.done = self.done or ordinal
            self.ordinal = ordinal
            return True
        if token in _REPEATS:
            if following is None or not _is_digit_word(following):
                return False
            self.repeat = _REPEATS[token]
            return True
        if token in ZEROS:
            started = bool(self.groups) or self.last is not None or self.repeat > 1
            if token != "zero" and not started and (following is None or not _is_number(following)):
                return False
            self.close()
            self._target().extend(["0"] * self.repeat)
            self.repeat = 1
            self.last = "zero"
            return True
        if token in UNITS:
            value = UNITS[token]
            if self.repeat > 1:
                self.close()
                self._target().extend([str(value)] * self.repeat)
                self.repeat = 1
                self.last = "zero"  # a finished digit: the next word starts a new group
                return True
            if self.last in (None, "tens", "hundred", "scale", "and"):
                self.chunk += value
                self.last = "unit"
            else:
                self._start(value, "unit")
            return True
        if token in TEENS or token in TENS:
            kind = "teen" if token in TEENS else "tens"
            if self.last in (None, "hundred", "scale", "and"):
                self.chunk += _CARDINALS[token]
                self.last = kind
            else:
                self._start(_CARDINALS[token], kind)
            return True
        if token in ORDINALS:
            value = ORDINALS[token]
            fits = self.last in (None, "hundred", "scale", "and") or (
                self.last == "tens" and value < 10
            )
            if not fits:
                self.close()
            self.chunk += value
            self.last = "unit"
            self.ordinal = True
            self.done = True
            return True
        if token == "a":
            if self.last is not None or following not in ("hundred", *SCALES):
                return False
            self.chunk, self.last = 1, "unit"
            return True
        if token == "hundred":
            if self.last not in ("unit", "teen", "tens") or self.chunk >= 100:
                return False
            self.chunk *= 100
            self.last = "hundred"
            return True
        if token in SCALES:
            scale = SCALES[token]
            if self.last not in ("unit", "teen", "tens", "hundred"):
                return False
            if self.scale is not None and scale >= self.scale:
                return False
            self.total += self.chunk * scale
            self.chunk = 0
            self.scale = scale
            self.last = "scale"
            return True
        if token == "and":
            if self.last not in ("hundred", "scale") or following not in _CARDINALS:
                return False
            self.last = "and"
            return True
        if token == "point":
            if self.fraction is not None or following is None:
                return False
            if not (_is_digit_word(following) or following in _CARDINALS):
                return False
            if not self.groups and self.last is None:
                self.groups.append("0")  # "point five"
            self.close()
            self.fraction = []
            return True
        return False


def _is_number(token: str) -> bool:
    return (
        token in _CARDINALS
        or token in ZEROS
        or token in ORDINALS
        or token in _REPEATS
        or _numeral(token) is not None
    )


def _run_at(words: Sequence[str], start: int) -> NumberRun | None:
    negative = words[start] in ("minus", "negative")
    i = start + 1 if negative else start
    reader = _Reader()
    while i < len(words):
        following = words[i + 1] if i + 1 < len(words) else None
        if not reader.feed(words[i], following):
            break
        i += 1
    reader.close()
    if not reader.groups:
        return None
    fraction = "".join(reader.fraction) if reader.fraction else None
    return NumberRun(start, i, tuple(reader.groups), fraction, negative, reader.ordinal)


def number_runs(words: Sequence[str]) -> list[NumberRun]:
    """Every run of number words in `words`, in order."""
    runs: list[NumberRun] = []
    i = 0
    while i < len(words):
        run = _run_at(words, i)
        if run is None:
            i += 1
        else:
            runs.append(run)
            i = run.end
    return runs


def cardinal_words(number: int) -> str:
    """`number` in words: 2026 -> "two thousand twenty six", -5 -> "minus five"."""
    if number < 0:
        return "minus " + cardinal_words(-number)
    if number == 0:
        return "zero"
    words: list[str] = []
    for name, scale in sorted(SCALES.items(), key=lambda item: -item[1]):
        if number >= scale:
            words += [cardinal_words(number // scale), name]
            number %= scale
    if number >= 100:
        words += [_DIGIT_NAMES[number // 100], "hundred"]
        number %= 100
    if number >= 20:
        tens = number - number % 10
        words.append(next(w for w, v in TENS.items() if v == tens))
        number %= 10
    if number:
        words.append(next(w for w, v in _CARDINALS.items() if v == number))
    return " ".join(words)


def ordinal_words(number: int) -> str:
    """`number` as an ordinal: 3 -> "third", 21 -> "twenty first"."""
    *head, last = cardinal_words(number).split()
    last = next((o for o, v in ORDINALS.items() if _CARDINALS.get(last) == v), last + "th")
    return " ".join([*head, last])


def digit_words(digits: str) -> str:
    """Each digit by name: "4217" -> "four two one seven"."""
    return " ".join(_DIGIT_NAMES[int(d)] for d in digits)


def decimal_words(number: Decimal) -> str:
    """A decimal number in words: 3.14 -> "three point one four"."""
    whole, _, fraction = f"{abs(number):f}".partition(".")
    spoken = cardinal_words(int(whole))
    if fraction:
        spoken += " point " + digit_words(fraction)
    return "minus " + spoken if number < 0 else spoken
