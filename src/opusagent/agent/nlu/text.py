"""Words of an utterance, as every parser sees them.

Recognisers give lower-case words with numbers spelled out ("four two one seven"); typed
input has digits and symbols ("$25.50"). `tokens` keeps both: lower-case words (apostrophes
inside words stay: "that's"), numbers as written ("25.50", "1,234", "3rd") and the money
and phone symbols "$", "£", "€", "¥", "+". Hesitations ("um", "uh") are dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_TOKEN = re.compile(r"\d+(?:[.,]\d+)*(?:st|nd|rd|th)?|[^\W\d_]+(?:'[^\W\d_]+)*|[$£€¥+]")
FILLERS = frozenset({"um", "umm", "uh", "uhh", "uhm", "er", "erm", "hmm", "mm", "ah"})
_CORRECTION = re.compile(
    r"\b(?:no|sorry|i mean|actually|wait|scratch that|correction)\b[\s,.;:!-]*", re.IGNORECASE
)


def tokens(text: str, *, keep_fillers: bool = False) -> list[str]:
    """The words, numbers and symbols of `text`, lower-cased, hesitations left out (unless
    `keep_fillers`: "uh huh" and "mm hmm" are answers)."""
    return [t for t in _TOKEN.findall(text.lower()) if keep_fillers or t not in FILLERS]


def after_correction(text: str) -> str | None:
    """What follows the caller's last self-correction ("four, no, five" -> "five").

    None when there is no correction marker with something after it.
    """
    cut = None
    for match in _CORRECTION.finditer(text):
        if text[match.end() :].strip():
            cut = match.end()
    return None if cut is None else text[cut:]


def find_phrase(words: Sequence[str], phrase: Sequence[str], start: int = 0) -> int:
    """Index of the first occurrence of `phrase` in `words` at or after `start`, or -1."""
    size = len(phrase)
    if size == 0:
        return -1
    for i in range(start, len(words) - size + 1):
        if list(words[i : i + size]) == list(phrase):
            return i
    return -1


def word_set(words: str) -> frozenset[str]:
    """The words of a space-separated string: long word lists stay readable."""
    return frozenset(words.split())
