"""Intent classification by keywords and fuzzy matching, and how embeddings combine in."""

from collections.abc import Sequence

import numpy as np
import pytest

from opusagent.agent.nlu.embeddings import Vectors
from opusagent.agent.nlu.intents import IntentClassifier, IntentMatch

INTENTS = {
    "agent/human": ["talk to a human", "speak to a representative", "agent", "operator"],
    "billing": ["question about my bill", "billing", "i was overcharged", "pay my bill"],
    "balance": ["check my balance", "how much money do i have", "account balance"],
    "cancel": ["cancel my subscription", "i want to cancel", "close my account"],
    "goodbye": ["goodbye", "bye", "that's all", "hang up"],
    "deny": ["no", "nope"],
}


@pytest.fixture
def classifier() -> IntentClassifier:
    return IntentClassifier(INTENTS)


@pytest.mark.parametrize(
    ("text", "name", "method"),
    [
        ("Agent.", "agent/human", "keyword"),
        ("Check my balance", "balance", "keyword"),
        ("um i'd like to pay my bill please", "billing", "keyword"),
        ("could i speak to a representative", "agent/human", "keyword"),
        ("no i want to talk to a human", "agent/human", "keyword"),
        ("check my balanse", "balance", "fuzzy"),
        ("operator please", "agent/human", "keyword"),
        ("i think i was over charged", "billing", "fuzzy"),
        ("cancel", "cancel", "fuzzy"),
    ],
)
def test_examples_said_outright_or_nearly(
    classifier: IntentClassifier, text: str, name: str, method: str
) -> None:
    match = classifier.classify(text)
    assert match is not None
    assert (match.name, match.method) == (name, method)


def test_an_exact_example_scores_one(classifier: IntentClassifier) -> None:
    assert classifier.classify("hang up") == IntentMatch("goodbye", 1.0, "keyword")


@pytest.mark.parametrize(
    "text", ["what's the weather like in paris", "tell me a joke", "yes", "", "um uh"]
)
def test_unrelated_utterances_match_nothing(classifier: IntentClassifier, text: str) -> None:
    assert classifier.classify(text) is None


def test_scores_rank_every_intent_best_first(classifier: IntentClassifier) -> None:
    ranked = classifier.scores("i was overcharged on my bill")
    assert ranked[0].name == "billing"
    assert sorted(m.name for m in ranked) == sorted(INTENTS)
    assert [m.score for m in ranked] == sorted((m.score for m in ranked), reverse=True)


def test_among_restricts_the_candidates(classifier: IntentClassifier) -> None:
    assert classifier.classify("agent", among={"billing", "goodbye"}) is None
    assert {m.name for m in classifier.scores("agent", among=["goodbye", "billing"])} == {
        "billing",
        "goodbye",
    }


def test_unknown_intents_in_among_are_an_error(classifier: IntentClassifier) -> None:
    with pytest.raises(ValueError, match="unknown intents: refund"):
        classifier.classify("agent", among={"refund", "billing"})


def test_the_threshold_decides(classifier: IntentClassifier) -> None:
    strict = IntentClassifier(INTENTS, threshold=0.95)
    assert classifier.classify("check my balanse") is not None
    assert strict.classify("check my balanse") is None


def test_ties_go_to_the_name_that_sorts_first() -> None:
    tied = IntentClassifier({"zeta": ["hello"], "alpha": ["hello"]})
    assert tied.scores("hello") == [
        IntentMatch("alpha", 1.0, "keyword"),
        IntentMatch("zeta", 1.0, "keyword"),
    ]


def test_the_same_utterance_always_gives_the_same_scores() -> None:
    texts = ["please cancel", "how much do i have", "bye now", "operator"]
    first = [IntentClassifier(INTENTS).scores(t) for t in texts]
    second = [IntentClassifier(dict(reversed(INTENTS.items()))).scores(t) for t in texts]
    assert first == second


def test_expected_phrases_are_the_examples_once(classifier: IntentClassifier) -> None:
    assert classifier.expected_phrases(among={"deny", "goodbye"}) == [
        "goodbye",
        "bye",
        "that's all",
        "hang up",
        "no",
        "nope",
    ]
    both = IntentClassifier({"a": ["yes", "sure"], "b": ["sure", "ok"]})
    assert both.expected_phrases() == ["yes", "sure", "ok"]


class TableEmbedder:
    """A stand-in embedder: fixed unit vectors by text, counting what it is asked."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = {k: np.array(v, np.float32) / np.linalg.norm(v) for k, v in table.items()}
        self.calls: list[list[str]] = []

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(list(texts))
        return np.stack([self.table.get(t, np.array([0, 0, 1], np.float32)) for t in texts])


def test_embeddings_find_what_keywords_miss() -> None:
    embedder = TableEmbedder(
        {
            "talk to a human": [1, 0, 0],
            "pay my bill": [0, 1, 0],
            "get me a real person": [0.9, 0.1, 0],
        }
    )
    classifier = IntentClassifier(
        {"agent": ["talk to a human"], "billing": ["pay my bill"]}, embedder=embedder
    )
    match = classifier.classify("Get me a real person!")
    assert match is not None
    assert (match.name, match.method) == ("agent", "embedding")
    assert match.score == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-4)


def test_examples_are_embedded_once_and_each_utterance_once() -> None:
    embedder = TableEmbedder({"talk to a human": [1, 0, 0], "pay my bill": [0, 1, 0]})
    classifier = IntentClassifier(
        {"agent": ["talk to a human"], "billing": ["pay my bill"]}, embedder=embedder
    )
    classifier.scores("pay my bill")
    classifier.classify("pay my bill")
    assert embedder.calls == [["talk to a human", "pay my bill"], ["pay my bill"]]


def test_a_keyword_match_keeps_its_method_when_the_embedding_ties() -> None:
    embedder = TableEmbedder({"agent": [1, 0, 0]})
    classifier = IntentClassifier({"agent/human": ["agent"]}, embedder=embedder)
    assert classifier.classify("agent") == IntentMatch("agent/human", 1.0, "keyword")
