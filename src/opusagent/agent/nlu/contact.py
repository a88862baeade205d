"""Email addresses and people's names, spoken or typed.

Email: typed ("John.Smith@Example.com") or spoken ("john dot smith at example dot com",
"j o h n underscore two three at gmail dot com"); the value is lower case. Spoken, the local
part is the words just before "at" (back to "is", "it's", "email"...), run together, with
"dot"/"period", "underscore", "dash"/"hyphen" and "plus" as symbols and number words as
digits; the domain is "word dot word [dot word...]". Checked against a practical subset of
the RFC 5322 addr-spec (dot-separated atoms; a domain of letter-digit-hyphen labels with a
top-level label of at least two letters).

Name: "my name is john smith" -> "John Smith". Leading phrases ("my name is", "this is",
"it's", "i'm", "call me"...) are dropped; the name ends at "and", "from", "calling"...;
letters spelled one by one are joined ("j o h n" -> "John"); at most four words.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from opusagent.agent.nlu.numbers import UNITS, digit_words, number_runs
from opusagent.agent.nlu.results import Invalid, Parsed
from opusagent.agent.nlu.text import FILLERS, word_set

_ATOM = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
EMAIL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_LABEL}\.)+[a-z]{{2,}}")
_EMAIL_WORD = re.compile(r"[\w.+'-]+")
_SYMBOL_WORDS = {
    "dot": ".",
    "period": ".",
    "point": ".",
    "underscore": "_",
    "dash": "-",
    "hyphen": "-",
    "plus": "+",
}
_AT = frozenset({"at", "@"})
_EMAIL_LEAD_INS = word_set(
    "is it's its email e-mail address my me sure yes yeah okay ok so that's thats "
    "it the this to at use try reach"
)
_NUMBER_WORDS = frozenset({*UNITS, "zero"})
_NAME_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
_NAME_LEAD_INS: tuple[tuple[str, ...], ...] = tuple(
    tuple(p.split())
    for p in (
        "you can call me",
        "my name is",
        "my name's",
        "the name is",
        "the name's",
        "name's",
        "name is",
        "this is",
        "it is",
        "it's",
        "i am",
        "i'm",
        "call me",
        "yes",
        "yeah",
        "sure",
        "hi",
        "hello",
        "ok",
        "okay",
        "so",
    )
)
_NAME_ENDS = word_set("and but from calling speaking here please thanks thank i i'm my with at")
_MAX_NAME_WORDS = 4


def speak_email(address: str) -> str:
    """ "john.smith@example.com" -> "john dot smith at example dot com"."""
    names = {".": "dot", "@": "at", "_": "underscore", "-": "dash", "+": "plus"}
    words = []
    for piece in re.findall(r"[a-z]+|\d+|.", address):
        words.append(names.get(piece) or (digit_words(piece) if piece.isdigit() else piece))
    return " ".join(words)


def _email(address: str, text: str) -> Parsed | Invalid:
    if EMAIL.fullmatch(address) is None:
        return Invalid(f"{address} is not a valid email address", text)
    return Parsed(address, speak_email(address), text)


def _domain(words: Sequence[str], start: int) -> tuple[str, int] | None:
    """ "example dot com" from words[start:]: (domain, end) or None."""
    parts: list[str] = []
    i = start
    while i < len(words):
        symbol = _SYMBOL_WORDS.get(words[i])
        if symbol in (".", "-") and parts and parts[-1] not in (".", "-"):
            if i + 1 < len(words) and _SYMBOL_WORDS.get(words[i + 1]) is None:
                parts.append(symbol)
                i += 1
                continue
            break
        if symbol is None and (not parts or parts[-1] in (".", "-")):
            parts.append(words[i].strip(".-"))
            i += 1
            continue
        break
    domain = "".join(parts)
    return (domain, i) if "." in domain else None


def _local_part(words: Sequence[str]) -> str:
    """The spoken local part, `words` being those between the lead-in and "at"."""
    pieces: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word in _NUMBER_WORDS:
            runs = number_runs(words[i:])
            pieces.append(runs[0].digits)
            i += runs[0].end
            continue
        pieces.append(_SYMBOL_WORDS.get(word, "o" if word == "oh" else word))
        i += 1
    return "".join(pieces)


def parse_email(text: str) -> Parsed | Invalid | None:
    """The email address in `text`."""
    lower = text.lower()
    typed = EMAIL.search(lower)
    if typed is not None:
        return _email(typed.group(), typed.group())
    words = _EMAIL_WORD.findall(lower)
    for at in reversed([i for i, w in enumerate(words) if w in _AT]):
        domain = _domain(words, at + 1)
        if domain is None:
            continue
        start = at
        while start > 0 and words[start - 1] not in _EMAIL_LEAD_INS:
            start -= 1
        if start == at:
            continue
        address = f"{_local_part(words[start:at])}@{domain[0]}"
        return _email(address, " ".join(words[start : domain[1]]))
    return None


def _title(word: str) -> str:
    return re.sub(r"[^\W\d_]+", lambda m: m.group().capitalize(), word)


def parse_name(text: str) -> Parsed | None:
    """A person's name in `text`, in Title Case."""
    if any(c.isdigit() for c in text):
        return None
    words = [w for w in _NAME_WORD.findall(text.lower()) if w not in FILLERS]
    stripped = True
    while stripped:
        stripped = False
        for lead_in in _NAME_LEAD_INS:
            if tuple(words[: len(lead_in)]) == lead_in:
                words = words[len(lead_in) :]
                stripped = True
    end = next((i for i, w in enumerate(words) if w in _NAME_ENDS), len(words))
    joined: list[str] = []
    spelling = False  # the last word is letters spelled one by one
    for word in words[:end]:
        if spelling and len(word) == 1:
            joined[-1] += word
        else:
            joined.append(word)
        spelling = len(word) == 1
    if not joined:
        return None
    name = " ".join(_title(w) for w in joined[:_MAX_NAME_WORDS])
    return Parsed(name, name, " ".join(words[:end]))
