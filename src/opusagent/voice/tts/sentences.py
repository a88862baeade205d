"""Split streaming text into speakable pieces: sentences, and clauses where waiting costs.

Text arrives in arbitrary deltas (an LLM's tokens). A piece is cut as soon as its boundary is
certain, so synthesis can start while the rest of the reply is still being generated. The
first piece is also cut at a clause boundary (comma, semicolon, colon, dash) once it holds
`first_clause_words` words, so the first audio comes early; later pieces only when a sentence
runs past `clause_words`. The cut points depend only on the text, never on how it was split
into deltas, so `split_text` gives exactly the pieces a stream of the same text gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ABBREVIATIONS = frozenset(
    {
        "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "mt", "ft", "vs", "approx",
        "dept", "est", "fig", "gen", "gov", "lt", "sgt", "capt", "col", "rev", "hon",
        "ave", "blvd", "rd", "ext", "tel", "jan", "feb", "mar", "apr", "jun", "jul",
        "aug", "sep", "sept", "oct", "nov", "dec",
    }
)  # fmt: skip
"""Words whose trailing period never ends a sentence (compared in lower case)."""

_CLOSERS = "\"')\\]\u201d\u2019"
_CANDIDATE = re.compile(
    rf"(?P<sentence>[.!?…]+[{_CLOSERS}]*)"
    rf"|(?P<clause>[,;:][{_CLOSERS}]*)"
    r"|(?P<dash>[\u2013\u2014]+|(?<=\s)-+(?=\s))"
    r"|(?P<newline>\n)"
)
_LAST_TOKEN = re.compile(r"\S*$")
_INITIALS = re.compile(r"(?:[^\W\d_]\.)*[^\W\d_]")
"""A single letter or dotted letters: an initial, "e.g", "U.S", "a.m"."""
_OPENERS = "\"'([\u201c\u2018"


@dataclass(frozen=True, slots=True)
class SplitRules:
    """How eagerly to cut clauses."""

    first_clause_words: int = 5
    """The first piece is cut at a clause boundary once it has this many words."""
    clause_words: int = 25
    """Later pieces are cut at a clause boundary only once they have this many words."""

    def __post_init__(self) -> None:
        if self.first_clause_words < 1 or self.clause_words < 1:
            raise ValueError(f"clause word thresholds must be at least 1: {self}")


class SentenceSplitter:
    """Turns text deltas into pieces to speak; one instance per stream of text."""

    def __init__(self, rules: SplitRules | None = None) -> None:
        self._rules = rules or SplitRules()
        self._buffer = ""
        self._scan = 0
        """Everything in the buffer before this index is decided not to be a boundary."""
        self._emitted = False

    def push(self, delta: str) -> list[str]:
        """Add text; returns the pieces it completed (often none)."""
        self._buffer += delta
        pieces: list[str] = []
        while (end := self._next_boundary()) is not None:
            self._emit(self._buffer[:end], pieces)
            self._buffer = self._buffer[end:]
            self._scan = 0
        return pieces

    def flush(self) -> list[str]:
        """The text is complete: returns what is left as a final piece, if it says anything."""
        pieces: list[str] = []
        self._emit(self._buffer, pieces)
        self._buffer = ""
        self._scan = 0
        return pieces

    def _emit(self, raw: str, pieces: list[str]) -> None:
        piece = " ".join(raw.split())
        if _speakable(piece):
            pieces.append(piece)
            self._emitted = True

    def _next_boundary(self) -> int | None:
        """End index of the first certain boundary; None if there is none yet."""
        text = self._buffer
        for match in _CANDIDATE.finditer(text, self._scan):
            verdict = self._judge(match)
            if verdict is None:
                return None  # undecided until more text arrives; nothing after it counts yet
            if verdict:
                return match.end()
            self._scan = match.end()
        return None

    def _judge(self, match: re.Match[str]) -> bool | None:
        """Whether a candidate ends a piece; None while the text after it is too short to tell."""
        text, end = self._buffer, match.end()
        if match["newline"]:
            return _speakable(text[: match.start()])
        if end == len(text):
            return None
        if match["dash"]:
            return self._long_enough(text[:end])
        if not text[end].isspace():
            return False
        if match["clause"]:
            return self._long_enough(text[:end])
        if re.search(r"[!?]", match["sentence"]):
            return True
        return self._period_ends_sentence(match)

    def _period_ends_sentence(self, match: re.Match[str]) -> bool | None:
        text, start, end = self._buffer, match.start(), match.end()
        last = _LAST_TOKEN.search(text, 0, start)
        token_start = last.start() if last else start
        token = text[token_start:start].lstrip(_OPENERS)
        if token.lower() in ABBREVIATIONS or _INITIALS.fullmatch(token):
            return False
        if token.isdigit() and not text[:token_start].strip():
            return False  # a list number: "1. Open the app"
        rest = text[end:]
        after = rest.lstrip()
        if "\n" in rest[: len(rest) - len(after)]:
            return True
        if not after:
            return None
        return not after[0].islower()  # "approx. five" continues the sentence

    def _long_enough(self, piece: str) -> bool:
        rules = self._rules
        needed = rules.clause_words if self._emitted else rules.first_clause_words
        return len(piece.split()) >= needed


def _speakable(text: str) -> bool:
    return any(c.isalnum() for c in text)


def split_text(text: str, rules: SplitRules | None = None) -> list[str]:
    """The pieces a stream carrying exactly `text` is spoken in."""
    splitter = SentenceSplitter(rules)
    return splitter.push(text) + splitter.flush()
