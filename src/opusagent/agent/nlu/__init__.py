"""Offline language understanding for Finite State Agents: slot parsers and intents, no LLM.

`slots.extract` finds a typed slot value (digits, number, amount, date, time, yes/no, choice,
phone, email, name, free text) in what the caller said, typed or keyed, with a spoken
confirmation form; `intents.IntentClassifier` matches an utterance to intents learnt from
their examples (keywords and fuzzy matching, plus all-MiniLM-L6-v2 sentence embeddings when
given a `MiniLMEmbedder`). Both give the recogniser grammar hints (`expected_phrases`).
"""

from opusagent.agent.nlu.embeddings import Embedder, EmbedderUnavailableError, MiniLMEmbedder
from opusagent.agent.nlu.intents import IntentClassifier, IntentMatch
from opusagent.agent.nlu.slots import (
    Invalid,
    JsonValue,
    Parsed,
    SlotKind,
    SlotRules,
    expected_phrases,
    extract,
    spoken,
)

__all__ = [
    "Embedder",
    "EmbedderUnavailableError",
    "IntentClassifier",
    "IntentMatch",
    "Invalid",
    "JsonValue",
    "MiniLMEmbedder",
    "Parsed",
    "SlotKind",
    "SlotRules",
    "expected_phrases",
    "extract",
    "spoken",
]
