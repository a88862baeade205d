"""Intent classification from each intent's examples, offline and deterministic.

Interface (the Finite State Agent controller codes against exactly this)::

    IntentMatch(name, score, method)      # method: "keyword" | "fuzzy" | "embedding"
    IntentClassifier(intents, *, threshold=0.5, embedder=None)
        .classify(text, among=None) -> IntentMatch | None   # best at or above threshold
        .scores(text, among=None) -> list[IntentMatch]      # every intent, best first
        .expected_phrases(among=None) -> list[str]          # the examples, as grammar hints

An intent's score is the best of three, each in [0, 1], over its examples:

- keyword: 1.0 when the utterance is an example; 0.75 to 0.99 when an example is said
  inside it as whole words (more when it holds more of the utterance's content words, and
  a little more when it comes later: "no, i want an agent" is about the agent);
- fuzzy: the higher of the character similarity (difflib ratio, rescaled so that 0.5, what
  unrelated short phrases reach, counts as 0) and the overlap (F1) of the content words
  (stop words such as "i", "to", "the" left out), times 0.9: only a near-copy of an example
  ("check my balanse") passes the default threshold this way;
- embedding (with an `Embedder`): the cosine similarity of the utterance and the example
  sentence vectors; the examples are encoded once, when the classifier is made. With
  all-MiniLM-L6-v2, paraphrases of an example score about 0.55-0.8 and unrelated call-centre
  utterances below 0.45, hence the default threshold of 0.5.

Text is compared normalised (`text.tokens`: lower case, punctuation and "um"/"uh" dropped).
Scores are rounded to 4 decimals and ties go to the name that sorts first, so the same
utterance always gives the same answer.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from opusagent.agent.nlu.embeddings import Embedder, Vectors
from opusagent.agent.nlu.text import tokens, word_set

Method = Literal["keyword", "fuzzy", "embedding"]
DEFAULT_THRESHOLD = 0.5
_FUZZY_SCALE = 0.9
_CHANCE_RATIO = 0.5  # difflib ratios below this are what unrelated short phrases reach
_STOP_WORDS = word_set(
    "a an the i i'm i'd i'll me my we our you your it it's is are was be to of for "
    "in on at and or but so do does did can could would will should please just "
    "like want need some any that this there with about get have has"
)


@dataclass(frozen=True, slots=True)
class IntentMatch:
    name: str
    score: float
    method: Method


def _normal(text: str) -> str:
    return " ".join(tokens(text))


def _content(words: Sequence[str]) -> set[str]:
    return {w for w in words if w not in _STOP_WORDS}


def _keyword(words: Sequence[str], example: Sequence[str]) -> float:
    """1.0 for the example itself; 0.75-0.99 for the example said inside the utterance."""
    if list(words) == list(example):
        return 1.0
    size = len(example)
    wanted = _content(example)
    if not wanted:
        return 0.0
    ends = [
        i + size for i in range(len(words) - size + 1) if list(words[i : i + size]) == list(example)
    ]
    if not ends:
        return 0.0
    coverage = len(wanted) / len(_content(words))
    return 0.75 + 0.19 * coverage + 0.05 * ends[-1] / len(words)


def _fuzzy(text: str, words: Sequence[str], example: str, example_words: Sequence[str]) -> float:
    ratio = difflib.SequenceMatcher(None, text, example).ratio()
    ratio = max(ratio - _CHANCE_RATIO, 0.0) / (1.0 - _CHANCE_RATIO)
    said, wanted = _content(words), _content(example_words)
    common = len(said & wanted)
    overlap = 2 * common / (len(said) + len(wanted)) if common else 0.0
    return _FUZZY_SCALE * max(ratio, overlap)


class IntentClassifier:
    """Picks the intent whose examples an utterance is closest to."""

    def __init__(
        self,
        intents: Mapping[str, Sequence[str]],
        *,
        threshold: float = DEFAULT_THRESHOLD,
        embedder: Embedder | None = None,
    ) -> None:
        self.threshold = threshold
        self._examples = {name: list(examples) for name, examples in intents.items()}
        self._normal = {
            name: [(_normal(e), tokens(e)) for e in examples]
            for name, examples in self._examples.items()
        }
        self._embedder = embedder
        self._vectors: dict[str, Vectors] = {}
        if embedder is not None:
            flat = [e for examples in self._normal.values() for e, _ in examples]
            vectors = embedder.encode(flat) if flat else np.zeros((0, 0), np.float32)
            start = 0
            for name, examples in self._normal.items():
                self._vectors[name] = vectors[start : start + len(examples)]
                start += len(examples)
        self._last: tuple[str, Vectors] | None = None

    def _names(self, among: Collection[str] | None) -> list[str]:
        if among is None:
            return list(self._examples)
        unknown = sorted(set(among) - set(self._examples))
        if unknown:
            raise ValueError(f"unknown intents: {', '.join(unknown)}")
        return [name for name in self._examples if name in among]

    def _embedding(self, text: str) -> Vectors:
        last = self._last  # read once: calls of several conversations run in worker threads
        if last is None or last[0] != text:
            assert self._embedder is not None
            last = (text, self._embedder.encode([text])[0])
            self._last = last
        return last[1]

    def _score(self, name: str, text: str, words: Sequence[str]) -> IntentMatch:
        best = IntentMatch(name, 0.0, "fuzzy")
        candidates: list[tuple[float, Method]] = []
        for example, example_words in self._normal[name]:
            candidates.append((_keyword(words, example_words), "keyword"))
            candidates.append((_fuzzy(text, words, example, example_words), "fuzzy"))
        if self._embedder is not None and len(self._vectors[name]):
            similarity = float(np.max(self._vectors[name] @ self._embedding(text)))
            candidates.append((min(max(similarity, 0.0), 1.0), "embedding"))
        order: dict[Method, int] = {"keyword": 0, "fuzzy": 1, "embedding": 2}
        for score, method in candidates:
            rounded = round(score, 4)
            if rounded > best.score or (
                rounded == best.score and order[method] < order[best.method]
            ):
                best = IntentMatch(name, rounded, method)
        return best

    def scores(self, text: str, among: Collection[str] | None = None) -> list[IntentMatch]:
        """Every intent (of `among`, when given) with its score, best first."""
        names = self._names(among)
        words = tokens(text)
        if not words:
            return sorted((IntentMatch(n, 0.0, "fuzzy") for n in names), key=lambda m: m.name)
        normal = " ".join(words)
        matches = [self._score(name, normal, words) for name in names]
        return sorted(matches, key=lambda m: (-m.score, m.name))

    def classify(self, text: str, among: Collection[str] | None = None) -> IntentMatch | None:
        """The best intent when its score reaches the threshold, else None."""
        ranked = self.scores(text, among)
        if ranked and ranked[0].score >= self.threshold:
            return ranked[0]
        return None

    def expected_phrases(self, among: Collection[str] | None = None) -> list[str]:
        """The examples of the intents (of `among`), each once, as grammar hints."""
        phrases: list[str] = []
        for name in self._names(among):
            phrases.extend(e for e in self._examples[name] if e not in phrases)
        return phrases
