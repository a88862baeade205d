"""Question-and-answer entries matched to a caller's question by the offline intent classifier.

The file is YAML: a list of `{question, answer, examples?}`; each entry's question and
examples are the phrasings it is matched against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from opusagent.agent.nlu.intents import IntentClassifier


class KnowledgeError(ValueError):
    """A knowledge base file that cannot be read."""


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    question: str
    answer: str
    examples: list[str] = Field(default_factory=list)


_ENTRIES = TypeAdapter(list[Entry])


@dataclass(frozen=True, slots=True)
class Answer:
    found: bool
    answer: str = ""
    question: str = ""
    score: float = 0.0


class KnowledgeBase:
    def __init__(self, entries: list[Entry]) -> None:
        self._entries = {f"q{i}": entry for i, entry in enumerate(entries)}
        self._classifier = IntentClassifier(
            {key: [entry.question, *entry.examples] for key, entry in self._entries.items()}
        )

    @classmethod
    def load(cls, path: Path) -> KnowledgeBase:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
            return cls(_ENTRIES.validate_python(raw or []))
        except OSError as exc:
            raise KnowledgeError(f"cannot read knowledge base {path}: {exc}") from None
        except (yaml.YAMLError, ValidationError) as exc:
            raise KnowledgeError(f"knowledge base {path} is not a list of entries: {exc}") from None

    def search(self, query: str) -> Answer:
        match = self._classifier.classify(query)
        if match is None:
            return Answer(found=False)
        entry = self._entries[match.name]
        return Answer(True, entry.answer, entry.question, round(match.score, 3))
