"""Grammars of expected phrases: JSGF for pocketsphinx, built once per phrase set.

A phrase is lower-cased and split into words; punctuation separates words (apostrophes stay:
"i'm"), and a run of digits is spelled digit by digit ("press 1" -> "press one"). A phrase
with a word missing from the pronunciation dictionary is left out with a logged warning (the
bundled model has no letter-to-sound rules to guess a pronunciation).

Spoken digit strings are asked for with `digits()` inside a phrase: `expect([digits(16)])`
takes any 16 spoken digits, "zero"/"oh"/"one"... "nine"; `digits(4, 6)` takes 4 to 6 of
them, `digits()` any number, and "my pin is " + digits(4) mixes words and digits.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

DIGIT_WORDS = ("zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
"""What the digits grammar hears; "oh" is spoken zero."""
_SPELLED = dict(zip("0123456789", ("zero", *DIGIT_WORDS[2:]), strict=True))
_DIGITS_TOKEN = re.compile(r"<digits(?::(\d+)(?:-(\d+))?)?>")
_SEPARATORS = re.compile(r"[^\w']|_")
_DIGIT_RULE = "<digit>"
_DIGIT_PATTERN = "(?:" + "|".join(DIGIT_WORDS) + ")"
MAX_DIGITS = 64
"""Upper bound for `digits` counts: each counted digit is one grammar state."""


def digits(least: int | None = None, most: int | None = None) -> str:
    """A phrase, or part of one, for spoken digits: `digits()` any number of them,
    `digits(16)` exactly 16, `digits(13, 19)` 13 to 19."""
    if least is None:
        if most is not None:
            raise ValueError("digits(most=...) needs a least count too")
        return "<digits>"
    high = least if most is None else most
    if not 1 <= least <= high <= MAX_DIGITS:
        raise ValueError(f"digit counts must satisfy 1 <= least <= most <= {MAX_DIGITS}")
    return f"<digits:{least}>" if high == least else f"<digits:{least}-{high}>"


def without_digits(phrase: str) -> str:
    """`phrase` with its `digits()` parts taken out (for recognisers that need no grammar)."""
    return " ".join(_DIGITS_TOKEN.sub(" ", phrase).split())


@dataclass(frozen=True, slots=True)
class _DigitRun:
    least: int
    most: int | None  # None: unbounded

    def jsgf(self) -> str:
        if self.most is None:
            return " ".join([_DIGIT_RULE] * (self.least - 1) + [_DIGIT_RULE + "+"])
        optional = self.most - self.least
        return " ".join([_DIGIT_RULE] * self.least + [f"[{_DIGIT_RULE}]"] * optional)

    def token(self) -> str:
        return digits() if self.most is None else digits(self.least, self.most)

    def pattern(self) -> str:
        upper = "" if self.most is None else str(self.most - 1)
        return f"{_DIGIT_PATTERN}(?: {_DIGIT_PATTERN}){{{self.least - 1},{upper}}}"


_Part = str | _DigitRun


@dataclass(frozen=True, slots=True)
class Grammar:
    """A compiled-once set of expected phrases."""

    name: str
    """Search name: a hash of the JSGF text, so equal grammars share a decoder search."""
    jsgf: str
    pattern: str
    """Regular expression matching exactly the word strings the grammar accepts."""
    phrases: tuple[str, ...]
    """The phrases kept, normalised."""

    def accepts(self, text: str) -> bool:
        """Whether `text` is a whole phrase of the grammar (not a prefix the search stopped at)."""
        return _compiled(self.pattern).fullmatch(text) is not None


@functools.lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _words(text: str) -> list[str]:
    words: list[str] = []
    for token in _SEPARATORS.sub(" ", text.lower()).split():
        token = token.strip("'")
        if token.isascii() and token.isdigit():
            words.extend(_SPELLED[d] for d in token)
        elif token:
            words.append(token)
    return words


def _parts(phrase: str) -> list[_Part]:
    parts: list[_Part] = []
    start = 0
    for match in _DIGITS_TOKEN.finditer(phrase):
        parts.extend(_words(phrase[start : match.start()]))
        least, most = match.group(1), match.group(2)
        if least is None:
            parts.append(_DigitRun(1, None))
        else:
            low, high = int(least), int(most or least)
            if not 1 <= low <= high <= MAX_DIGITS:
                raise ValueError(f"bad digit counts in {match.group()!r}")
            parts.append(_DigitRun(low, high))
        start = match.end()
    parts.extend(_words(phrase[start:]))
    return parts


def build_grammar(phrases: Sequence[str], vocabulary: Container[str]) -> Grammar | None:
    """The grammar of `phrases`, or None when no phrase is usable."""
    alternatives: dict[str, str] = {}  # normalised phrase -> its JSGF expansion
    patterns: list[str] = []
    uses_digits = False
    for phrase in phrases:
        try:
            parts = _parts(phrase)
        except ValueError as exc:
            log.warning("expect: %r left out: %s", phrase, exc)
            continue
        words = [p for p in parts if isinstance(p, str)]
        missing = sorted({w for w in words if w not in vocabulary})
        if missing:
            log.warning(
                "expect: %r left out, not in the dictionary: %s", phrase, ", ".join(missing)
            )
            continue
        if not parts:
            continue
        key = " ".join(p if isinstance(p, str) else p.token() for p in parts)
        if key in alternatives:
            continue
        alternatives[key] = " ".join(p if isinstance(p, str) else p.jsgf() for p in parts)
        uses_digits = uses_digits or len(words) < len(parts)
        patterns.append(
            " ".join(re.escape(p) if isinstance(p, str) else p.pattern() for p in parts)
        )
    if not alternatives:
        return None
    lines = ["#JSGF V1.0;", "grammar expected;"]
    if uses_digits:
        lines.append(f"{_DIGIT_RULE} = {' | '.join(DIGIT_WORDS)};")
    expansions = " | ".join(f"( {a} )" for a in alternatives.values())
    lines.append(f"public <expected> = {expansions};")
    jsgf = "\n".join(lines) + "\n"
    return Grammar(
        name="g" + hashlib.sha1(jsgf.encode()).hexdigest()[:16],
        jsgf=jsgf,
        pattern="|".join(f"(?:{p})" for p in patterns),
        phrases=tuple(alternatives),
    )


class GrammarBook:
    """Grammars by phrase list, built on first use: switching per turn is a dict lookup."""

    def __init__(self, vocabulary: Callable[[], Container[str]], size: int = 256) -> None:
        self._vocabulary = vocabulary
        self._size = size
        self._grammars: OrderedDict[tuple[str, ...], Grammar | None] = OrderedDict()

    def get(self, phrases: Sequence[str]) -> Grammar | None:
        key = tuple(phrases)
        if key in self._grammars:
            self._grammars.move_to_end(key)
            return self._grammars[key]
        grammar = build_grammar(key, self._vocabulary())
        self._grammars[key] = grammar
        if len(self._grammars) > self._size:
            self._grammars.popitem(last=False)
        return grammar
