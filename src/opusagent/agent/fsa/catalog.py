"""The agents a server offers, loaded once at start-up, and a fresh agent for each call."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opusagent.agent.fsa.agent import FsaAgent, OnCommit, Resume
from opusagent.agent.fsa.controller import Controller, Proposer
from opusagent.agent.fsa.loader import AgentFileError, LoadedAgent, load_agent
from opusagent.agent.fsa.state import AgentState
from opusagent.agent.llm.phrasing import Phraser
from opusagent.agent.nlu.embeddings import Embedder
from opusagent.agent.nlu.intents import IntentClassifier
from opusagent.bridges.twilio_rest import TwilioRest

AGENT_FILE_SUFFIXES = (".yaml", ".yml")


class UnknownAgentError(LookupError):
    """A call asked for an agent this server does not have."""


@dataclass(frozen=True)
class CatalogEntry:
    loaded: LoadedAgent
    controller: Controller


class AgentCatalog:
    """Agents by name, each with its controller (shared by its calls: it holds no call state)."""

    def __init__(
        self,
        entries: Mapping[str, CatalogEntry],
        default: str | None = None,
        *,
        twilio: TwilioRest | None = None,
        sms_from: str | None = None,
        phraser: Phraser | None = None,
    ) -> None:
        if not entries:
            raise AgentFileError("no agents were loaded")
        if default is not None and default not in entries:
            raise UnknownAgentError(
                f"default agent {default!r} is not among the loaded agents: {', '.join(entries)}"
            )
        self._entries = dict(entries)
        self.default = default or next(iter(entries))
        self._twilio = twilio
        self._sms_from = sms_from
        self.phraser = phraser
        """Words the replies of states with an `instruction` (None: their `say` is spoken)."""

    @classmethod
    def load(
        cls,
        paths: Sequence[Path],
        *,
        default: str | None = None,
        twilio: TwilioRest | None = None,
        sms_from: str | None = None,
        embedder: Embedder | None = None,
        proposer: Proposer | None = None,
        phraser: Phraser | None = None,
        today: datetime.date | None = None,
    ) -> AgentCatalog:
        """Load every agent file in `paths` (files, or folders of `*.yaml`)."""
        entries: dict[str, CatalogEntry] = {}
        for path in agent_files(paths):
            loaded = load_agent(path)
            name = loaded.spec.name
            if name in entries:
                raise AgentFileError(
                    f"{path}: agent name {name!r} is also used by {entries[name].loaded.path}"
                )
            entries[name] = CatalogEntry(
                loaded, build_controller(loaded, embedder=embedder, proposer=proposer, today=today)
            )
        return cls(entries, default, twilio=twilio, sms_from=sms_from, phraser=phraser)

    def use_embedder(self, embedder: Embedder) -> None:
        """Classify intents with sentence embeddings from now on (new calls get them).

        Encodes every agent's intent examples: run it off the event loop.
        """
        for name, entry in self._entries.items():
            controller = entry.controller
            intents = {n: intent.examples for n, intent in entry.loaded.spec.intents.items()}
            classifier = IntentClassifier(intents, embedder=embedder)
            self._entries[name] = CatalogEntry(
                entry.loaded, dataclasses.replace(controller, classifier=classifier)
            )

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entry(self, name: str | None = None) -> CatalogEntry:
        wanted = name or self.default
        try:
            return self._entries[wanted]
        except KeyError:
            raise UnknownAgentError(
                f"unknown agent {wanted!r}; this server has: {', '.join(self.names())}"
            ) from None

    def new_agent(
        self,
        name: str | None,
        *,
        call_id: str,
        context: Mapping[str, Any] | None = None,
        state: AgentState | None = None,
        on_commit: OnCommit | None = None,
        resume: Resume | None = None,
        links: object = None,
        sessions: object = None,
    ) -> FsaAgent:
        entry = self.entry(name)
        return FsaAgent(
            entry.controller,
            call_id=call_id,
            state=state,
            context=dict(context or {}),
            twilio=self._twilio,
            sms_from=self._sms_from,
            knowledge=entry.loaded.knowledge,
            on_commit=on_commit,
            resume=resume,
            links=links,
            sessions=sessions,
            phraser=self.phraser,
        )


def build_controller(
    loaded: LoadedAgent,
    *,
    embedder: Embedder | None = None,
    proposer: Proposer | None = None,
    today: datetime.date | None = None,
) -> Controller:
    spec = loaded.spec
    intents = {name: intent.examples for name, intent in spec.intents.items()}
    classifier = IntentClassifier(intents, embedder=embedder)
    return Controller(spec, loaded.tools, classifier, proposer=proposer, today=today)


def agent_files(paths: Sequence[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(
                sorted(p for p in path.iterdir() if p.suffix in AGENT_FILE_SUFFIXES and p.is_file())
            )
        elif path.is_file():
            found.append(path)
        else:
            raise AgentFileError(f"{path}: no such agent file or folder")
    return found
