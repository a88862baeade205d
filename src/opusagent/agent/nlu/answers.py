"""Answers to closed questions: yes or no, and one of a list of options.

Yes/no: "yes", "yeah", "yep", "sure", "that's right", "uh huh"... and "no", "nope", "nah",
"not really"...; a yes-word after "not" or a "-n't" word is a no ("that's not right"). When
both are said the last one counts ("no, yes" is yes; "yeah, no" is no). "not sure", "i don't
know", "maybe" give no answer. Keypad: 1 is yes, 2 is no (the usual "press 1 for yes").

Choice: an option is picked when its key (underscores read as spaces) or one of its synonyms
is said as whole words; the longest phrase said wins, and one not preceded by "not"/"don't"
("not savings, checking"). Otherwise an ordinal or number picks by position ("the second
one", "option two"), otherwise a close spelling (difflib ratio >= 0.8) of one phrase. Two
options equally matched is `Invalid` (ambiguous). Keypad: digit N picks the Nth option.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from opusagent.agent.nlu.numbers import number_runs
from opusagent.agent.nlu.results import Invalid, Parsed
from opusagent.agent.nlu.text import tokens

_YES = (
    "yes",
    "yeah",
    "yea",
    "ya",
    "yep",
    "yup",
    "sure",
    "correct",
    "right",
    "true",
    "absolutely",
    "definitely",
    "certainly",
    "exactly",
    "indeed",
    "affirmative",
    "okay",
    "ok",
    "alright",
    "all right",
    "of course",
    "uh huh",
    "mm hmm",
    "mhm",
    "please do",
    "go ahead",
    "sounds good",
    "why not",
    "no problem",
    "no worries",
    "i do",
    "it is",
    "that's it",
)
_NO = (
    "no",
    "nope",
    "nah",
    "negative",
    "incorrect",
    "wrong",
    "false",
    "never",
    "not really",
    "not at all",
    "no way",
    "no thanks",
    "no thank you",
    "i don't",
    "i do not",
    "don't",
    "do not",
)
_UNSURE = (
    "not sure",
    "i'm not sure",
    "i am not sure",
    "don't know",
    "do not know",
    "i don't know",
    "dunno",
    "maybe",
    "perhaps",
)
YES_PHRASES = ("yes", "yeah", "yep", "sure", "correct", "that's right")
NO_PHRASES = ("no", "nope", "not really", "that's wrong", "incorrect")
_NEGATIONS = frozenset({"not", "never"})
_ARTICLES = frozenset({"the", "a", "an", "my", "your"})
_ANSWERS: list[tuple[tuple[str, ...], bool | None]] = sorted(
    [(tuple(p.split()), True) for p in _YES]
    + [(tuple(p.split()), False) for p in _NO]
    + [(tuple(p.split()), None) for p in _UNSURE],
    key=lambda item: -len(item[0]),
)
_FUZZY_RATIO = 0.8


def _is_negation(word: str) -> bool:
    return word in _NEGATIONS or word.endswith("n't")


def _negated(words: Sequence[str], start: int) -> bool:
    """A "not" or "-n't" word in the two words before `start` ("that's not quite right")."""
    return any(_is_negation(w) for w in words[max(start - 2, 0) : start])


def _option_negated(words: Sequence[str], start: int) -> bool:
    """ "not savings", "not the savings": a negation just before the option."""
    before = [w for w in words[:start] if w not in _ARTICLES]
    return bool(before) and _is_negation(before[-1])


def parse_yes_no(text: str) -> Parsed | None:
    """True for yes, False for no; None when neither (or unsure) is the last said."""
    words = tokens(text, keep_fillers=True)
    last: tuple[bool | None, str] | None = None
    i = 0
    while i < len(words):
        for phrase, answer in _ANSWERS:
            if tuple(words[i : i + len(phrase)]) == phrase:
                if answer is True and _negated(words, i):
                    answer = False
                last = (answer, " ".join(phrase))
                i += len(phrase)
                break
        else:
            i += 1
    if last is None or last[0] is None:
        return None
    return Parsed(last[0], speak_yes_no(last[0]), last[1])


def parse_keyed_yes_no(keys: str) -> Parsed | None:
    answer = {"1": True, "2": False}.get(keys.rstrip("#"))
    return None if answer is None else Parsed(answer, speak_yes_no(answer), keys)


def speak_yes_no(answer: bool) -> str:
    return "yes" if answer else "no"


def option_phrases(key: str, synonyms: Sequence[str]) -> list[str]:
    """How an option may be said: its key with spaces for underscores, then its synonyms."""
    phrases: list[str] = []
    for phrase in (key.replace("_", " "), *synonyms):
        normal = " ".join(tokens(phrase))
        if normal and normal not in phrases:
            phrases.append(normal)
    return phrases


def speak_option(key: str, synonyms: Sequence[str]) -> str:
    """How the agent names an option: its first synonym, else its key."""
    return synonyms[0] if synonyms else key.replace("_", " ")


def _chosen(key: str, options: Mapping[str, Sequence[str]], text: str) -> Parsed:
    return Parsed(key, speak_option(key, options[key]), text)


def _best(
    scores: Mapping[str, tuple[float, str]], options: Mapping[str, Sequence[str]]
) -> Parsed | Invalid | None:
    if not scores:
        return None
    top = max(score for score, _ in scores.values())
    best = [key for key, (score, _) in scores.items() if score == top]
    if len(best) > 1:
        return Invalid(f"could be any of: {', '.join(best)}", scores[best[0]][1])
    return _chosen(best[0], options, scores[best[0]][1])


def parse_choice(text: str, options: Mapping[str, Sequence[str]]) -> Parsed | Invalid | None:
    """The option picked in `text` (see the module docstring)."""
    words = tokens(text)
    said: dict[str, tuple[float, str]] = {}
    for key, synonyms in options.items():
        for phrase in option_phrases(key, synonyms):
            size = len(phrase.split())
            for i in range(len(words) - size + 1):
                if " ".join(words[i : i + size]) == phrase and not _option_negated(words, i):
                    said[key] = max(said.get(key, (0, "")), (size, phrase))
    if said:
        return _best(said, options)
    by_position = _by_position(words, options)
    if by_position is not None:
        return by_position
    close: dict[str, tuple[float, str]] = {}
    for key, synonyms in options.items():
        for phrase in option_phrases(key, synonyms):
            size = len(phrase.split())
            for i in range(len(words) - size + 1):
                heard = " ".join(words[i : i + size])
                ratio = difflib.SequenceMatcher(None, heard, phrase).ratio()
                if ratio >= _FUZZY_RATIO and ratio > close.get(key, (0.0, ""))[0]:
                    close[key] = (ratio, heard)
    return _best(close, options)


def _by_position(
    words: Sequence[str], options: Mapping[str, Sequence[str]]
) -> Parsed | Invalid | None:
    """ "the second one", "number two", "option 3"."""
    for run in number_runs(words):
        before = words[run.start - 1] if run.start else ""
        if not (run.ordinal or before in ("number", "option")) or len(run.groups) != 1:
            continue
        text = " ".join(words[run.start - (not run.ordinal) : run.end])
        return _at_position(int(run.groups[0]), options, text)
    return None


def _at_position(
    position: int, options: Mapping[str, Sequence[str]], text: str
) -> Parsed | Invalid:
    keys = list(options)
    if not 1 <= position <= len(keys):
        return Invalid(f"there are {len(keys)} options, not {position}", text)
    return _chosen(keys[position - 1], options, text)


def parse_keyed_choice(keys: str, options: Mapping[str, Sequence[str]]) -> Parsed | Invalid | None:
    entry = keys.rstrip("#")
    return _at_position(int(entry), options, keys) if entry.isdigit() else None
