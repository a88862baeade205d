"""A Finite State Agent serving one conversation as the Call's `Agent` stage."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from opusagent.agent.fsa.audit import AuditEntry
from opusagent.agent.fsa.controller import DROPPED, Controller, Outcome, Phrase, TurnInput
from opusagent.agent.fsa.state import AgentState, Line
from opusagent.agent.llm.phrasing import PhrasedReply, Phraser
from opusagent.agent.tools.registry import ToolContext
from opusagent.bridges.twilio_rest import TwilioRest
from opusagent.call.events import CONNECTION_LOST, AgentStatus, HangUp, Transfer
from opusagent.call.fallback import (
    DEFAULT_GOODBYE_SAY,
    DEFAULT_TRANSFER_SAY,
    HANDOFF_REASON,
    Fallback,
)
from opusagent.call.stages import ExpectSpeech, HistoryEntry, ReplyPart, TurnKind, UserTurn

log = logging.getLogger(__name__)

OnCommit = Callable[[AgentState, Outcome], None]
Resume = Callable[[], Awaitable[AgentState | None]]
"""Finds the state of this conversation if it was already under way (a reconnect)."""


class FsaAgent:
    """Turns each `UserTurn` into a decided turn and streams its reply.

    A turn's new state is committed as one step once decided, and only if no newer turn has
    started meanwhile (a barge-in during a slow tool): a transition happens with its generation
    or not at all. With a `phraser`, the replies an LLM words stream token by token; a newer
    turn stops the one in flight at once.
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
        phraser: Phraser | None = None,
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
        self._phraser = phraser
        self._phrasing: PhrasedReply | None = None
        self._latest = -1
        self._seen_history = 0

    @property
    def state(self) -> AgentState:
        return self._state

    @property
    def fallback(self) -> Fallback:
        """What the call says when a stage fails, and its hand-off, from the agent file."""
        spec = self.controller.spec
        target = spec.fallback_transfer
        default_say = DEFAULT_TRANSFER_SAY if target else DEFAULT_GOODBYE_SAY
        return Fallback(
            say=spec.fallback_say,
            limit=spec.fallback_limit,
            handoff_say=spec.fallback_handoff_say or default_say,
            handoff=Transfer(target, HANDOFF_REASON) if target else HangUp(HANDOFF_REASON),
        )

    @property
    def tool_context(self) -> ToolContext:
        """What this conversation's tools are given (the slots and context are the turn's)."""
        return self._tool_context

    async def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        if turn.generation > self._latest and self._phrasing is not None:
            await self._phrasing.aclose()  # barge-in: the old reply's LLM stream stops now
        self._latest = max(self._latest, turn.generation)
        if turn.kind is TurnKind.START and self._resume is not None:
            previous = await self._resume()
            if previous is not None and previous.started and not previous.ended:
                self._state = previous  # the controller resumes it instead of greeting
        event = DROPPED if turn.kind is TurnKind.HANGUP and turn.text == CONNECTION_LOST else None
        decided = TurnInput(
            turn.kind, turn.text, turn.dtmf, event=event, generation=turn.generation
        )
        try:
            outcome = await self.controller.decide(self._state, decided, self._tool_context)
        except BaseException as exc:
            self._record_failure(turn, exc)
            raise
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
            if isinstance(item, Phrase) and self._phraser is not None:
                async with contextlib.aclosing(self._phrased(item, turn, outcome)) as deltas:
                    async for delta in deltas:
                        yield delta
            elif isinstance(item, str):
                if item:
                    yield f"{item} "
            else:
                yield item

    async def _phrased(
        self, phrase: Phrase, turn: UserTurn, outcome: Outcome
    ) -> AsyncGenerator[str, None]:
        assert self._phraser is not None
        reply = self._phraser.phrase(self.controller.spec, phrase, outcome.state.history, turn.text)
        outcome.audit.llm.append(reply.record)
        self._phrasing = reply
        try:
            async with contextlib.aclosing(aiter(reply)) as deltas:
                async for delta in deltas:
                    if turn.generation < self._latest:
                        return
                    yield delta
            yield " "
        finally:
            if self._phrasing is reply:
                self._phrasing = None

    def _record_failure(self, turn: UserTurn, exc: BaseException) -> None:
        """A turn that was never decided (it raised, or the call gave up waiting) still goes on
        the record, with the conversation so far; the state stays where it was."""
        state = self._state
        self._record_history(state, turn.history)
        state.turn += 1
        cancelled = isinstance(exc, asyncio.CancelledError)
        decision = "abandoned (no decision in time)" if cancelled else f"failed ({exc!r})"
        state.audit.append(
            AuditEntry(
                turn=state.turn,
                generation=turn.generation,
                kind=turn.kind.value,
                text=turn.text,
                dtmf=turn.dtmf,
                state_before=state.state,
                decision=decision,
                state_after=state.state,
            )
        )

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
