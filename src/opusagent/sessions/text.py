"""Conversations by text (SMS, a web chat) over the same session store as the calls, so a caller
who dropped can carry on by text with a resume code, and a text conversation can be picked up
again by voice.

Each message is one turn: the session is loaded, the agent's controller decides, and the session
is saved with its version (a stale write means another channel moved on: the message is refused).
"""

from __future__ import annotations

import dataclasses
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.agent.fsa.controller import TurnInput
from opusagent.agent.fsa.state import AgentState, Line
from opusagent.agent.llm.phrasing import phrased_speech
from opusagent.agent.tools.registry import ToolContext
from opusagent.call.stages import TurnKind
from opusagent.sessions.links import CODE_DIGITS, Links
from opusagent.sessions.store import SessionRecord, SessionStore

CODE_PATTERN = re.compile(rf"(?<!\d)(\d{{{CODE_DIGITS}}})(?!\d)")
_SPACED_DIGITS = re.compile(r"(?<=\d)[ -]+(?=\d)")


class UnknownConversationError(LookupError):
    """No conversation behind that code or id (or it has expired)."""


@dataclass(frozen=True, slots=True)
class TextReply:
    call_id: str
    text: str
    state: str
    ended: bool
    actions: list[str] = field(default_factory=list)
    """What the agent did that text cannot carry out (a transfer, a hang-up), described."""


def code_in(text: str) -> str | None:
    """The six-digit resume code in a message, if there is one."""
    found = CODE_PATTERN.search(_SPACED_DIGITS.sub("", text))
    return found.group(1) if found else None


class TextConversations:
    """Text turns for any agent of `agents`, sessions in `store`, codes in `links`."""

    def __init__(
        self,
        agents: AgentCatalog,
        store: SessionStore,
        links: Links,
        tools: ToolContext | None = None,
    ) -> None:
        self._agents = agents
        self._store = store
        self._links = links
        self._tools = tools

    async def start(
        self, agent: str | None, *, channel: str, context: dict[str, Any] | None = None
    ) -> TextReply:
        """A new conversation: the agent's greeting."""
        entry = self._agents.entry(agent)
        call_id = f"{channel}-{secrets.token_hex(8)}"
        state = entry.controller.new_state({**(context or {}), "call_id": call_id})
        now = datetime.now(UTC)
        record = SessionRecord(
            call_id=call_id,
            agent=entry.loaded.spec.name,
            bridge=channel,
            media={},
            state=state,
            created_at=now,
            updated_at=now,
        )
        return await self._turn(record, TurnInput(TurnKind.START), "")

    async def resume(self, code: str) -> TextReply:
        """Continue the conversation a resume code was issued for: "we got cut off", then the
        question it was waiting on."""
        call_id = await self._links.get(f"code:{code}")
        if call_id is None:
            raise UnknownConversationError(f"no conversation has the code {code}")
        record = await self._load(call_id)
        return await self._turn(record, TurnInput(TurnKind.START), "")

    async def say(self, call_id: str, text: str) -> TextReply:
        """One message from the person in conversation `call_id`."""
        record = await self._load(call_id)
        return await self._turn(record, TurnInput(TurnKind.SPEECH, text), text)

    async def _load(self, call_id: str) -> SessionRecord:
        record = await self._store.load(call_id)
        if record is None or record.ended:
            raise UnknownConversationError(f"conversation {call_id} has ended or expired")
        return record

    async def _turn(self, record: SessionRecord, turn: TurnInput, text: str) -> TextReply:
        controller = self._agents.entry(record.agent).controller
        base = self._tools or ToolContext(call_id="", slots={}, context={})
        context = dataclasses.replace(
            base,
            call_id=record.call_id,
            knowledge=self._agents.entry(record.agent).loaded.knowledge,
            links=self._links,
            sessions=self._store,
        )
        outcome = await controller.decide(record.state, turn, context)
        state: AgentState = outcome.state
        phraser = self._agents.phraser
        speech = await phrased_speech(phraser, controller.spec, outcome, state.history, text)
        if text:
            state.history.append(Line(speaker="caller", text=text))
        if speech:
            state.history.append(Line(speaker="agent", text=speech, generated=speech))
        saved = record.model_copy(
            update={"state": state, "updated_at": datetime.now(UTC), "ended": state.ended}
        )
        await self._store.save(saved)
        actions = [str(item) for item in outcome.reply if not isinstance(item, str)]
        return TextReply(record.call_id, speech, state.state, state.ended, actions)
