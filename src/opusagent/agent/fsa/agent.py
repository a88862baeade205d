"""A Finite State Agent serving one conversation as the Call's `Agent` stage."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from opusagent.agent.fsa.controller import DROPPED, Controller, Outcome, TurnInput
from opusagent.agent.fsa.state import AgentState, Line
from opusagent.agent.tools.registry import ToolContext
from opusagent.bridges.twilio_rest import TwilioRest
from opusagent.call.events import CONNECTION_LOST, AgentStatus
from opusagent.call.stages import ExpectSpeech, HistoryEntry, ReplyPart, TurnKind, UserTurn

log = logging.getLogger(__name__)

OnCommit = Callable[[AgentState, Outcome], None]
Resume = Callable[[], Awaitable[AgentState | None]]
"""Finds the state of this conversation if it was already under way (a reconnect)."""


class FsaAgent:
    """Turns each `UserTurn` into a decided turn and streams its reply.

    A turn's new state is committed as one step once decided, and only if no newer turn has
    started meanwhile (a barge-in during a slow tool): a transition happens with its generation
    or not at all.
    """

    def __init__(
        self,
        controller: Controller,
        *,
        call_id: str,
        state: AgentState | None = None,
        context: dict[str, Any] | None = None,
        twilio: TwilioRest | None = None,
        sms_from: str | None = None,
        knowledge: object = None,
        links: object = None,
        sessions: object = None,
        on_commit: OnCommit | None = None,
        resume: Resume | None = None,
    ) -> None:
        self.controller = controller
        self.call_id = call_id
        self._state = state or controller.new_state(context)
        self._tool_context = ToolContext(
            call_id=call_id,
            slots={},
            context={},
            twilio=twilio,
            sms_from=sms_from,
            knowledge=knowledge,
            links=links,
            sessions=sessions,
        )
        self._on_commit = on_commit
        self._resume = resume
        self._latest = -1
        self._seen_history = 0

    @property
    def state(self) -> AgentState:
        return self._state

    async def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        self._latest = max(self._latest, turn.generation)
        if turn.kind is TurnKind.START and self._resume is not None:
            previous = await self._resume()
            if previous is not None and previous.started and not previous.ended:
                self._state = previous  # the controller resumes it instead of greeting
        event = DROPPED if turn.kind is TurnKind.HANGUP and turn.text == CONNECTION_LOST else None
        decided = TurnInput(
            turn.kind, turn.text, turn.dtmf, event=event, generation=turn.generation
        )
        outcome = await self.controller.decide(self._state, decided, self._tool_context)
        if turn.generation < self._latest:
            return  # a newer turn began while this one was decided: it never happened
        self._record_history(outcome.state, turn.history)
        self._state = outcome.state
        audit = outcome.audit
        log.info(
            "call %s: %s -> %s (%s%s)",
            self.call_id,
            audit.state_before,
            audit.state_after,
            audit.decision,
            f"; intent {audit.intent} {audit.intent_score}" if audit.intent else "",
        )
        if self._on_commit is not None:
            self._on_commit(outcome.state, outcome)
        yield AgentStatus(outcome.state.state, self._status(outcome))
        yield ExpectSpeech(tuple(outcome.expected) if outcome.expected else None)
        for item in outcome.reply:
            yield f"{item} " if isinstance(item, str) else item

    def _record_history(self, state: AgentState, history: tuple[HistoryEntry, ...]) -> None:
        new = history[self._seen_history :]
        self._seen_history = len(history)
        state.history.extend(
            Line(
                speaker=e.speaker.value,
                text=e.text,
                dtmf=e.dtmf,
                interrupted=e.interrupted,
                overlapped=e.overlapped,
                generated=e.generated,
            )
            for e in new
        )

    def _status(self, outcome: Outcome) -> dict[str, object]:
        slots = self.controller.spec.slots
        return {
            "slots": {
                name: "***" if name in slots and slots[name].sensitive else value
                for name, value in outcome.state.slots.items()
            },
            "decision": outcome.audit.decision,
            "turn": outcome.audit.turn,
            "final": outcome.state.ended,
        }
