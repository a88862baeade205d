"""The controller: one turn in, the next state, the reply and the audit entry out.

Each turn: collect the input (text, DTMF, event) → understand it (intent, slot values) → ask the
LLM, when there is one, for a proposal (a transition and/or slot values, with a reason) →
check every candidate transition's conditions in priority order → accept the proposal only if its
transition holds, else take the first that holds → run the edge's tools → enter the state (its
tools, its say, and any transition that needs no input) → the reply.

The controller is deterministic: the same state, turn and proposal give the same outcome. It
never changes the state it is given: `decide` returns a new `AgentState`, committed by the caller
as one step (so a barge-in can never leave half a transition behind).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from opusagent.agent.fsa.audit import (
    AuditEntry,
    LLMCallRecord,
    ProposalRecord,
    ToolRecord,
    TransitionCheck,
)
from opusagent.agent.fsa.conditions import Facts, check, holds
from opusagent.agent.fsa.spec import AgentSpec, StateSpec, ToolCallSpec, TransitionSpec
from opusagent.agent.fsa.state import AgentState
from opusagent.agent.fsa.templates import AgentTemplateError, render
from opusagent.agent.nlu.intents import IntentClassifier
from opusagent.agent.nlu.slots import Invalid, Parsed, expected_phrases, extract, spoken
from opusagent.agent.tools.registry import (
    AdoptConversation,
    ToolContext,
    ToolError,
    ToolRegistry,
)
from opusagent.call.events import AgentAction, HangUp, SendDtmf, Transfer
from opusagent.call.stages import TurnKind

MAX_CHAINED_TRANSITIONS = 8
"""Transitions that need no input, taken one after another on entering states, at most."""
REPEAT_INTENT = "repeat"
RESUMED = "resumed"
"""`TurnInput.event` of a START turn that continues a conversation already under way."""
DROPPED = "dropped"
"""`TurnInput.event` of a HANGUP turn for a lost connection: the conversation may resume."""


@dataclass(frozen=True, slots=True)
class TurnInput:
    """What happened since the agent last spoke."""

    kind: TurnKind
    text: str = ""
    dtmf: str = ""
    event: str | None = None
    generation: int = 0


@dataclass(frozen=True, slots=True)
class Proposal:
    """An LLM's suggestion; the rules accept or refuse each part."""

    to: str | None = None
    slots: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    scratchpad: str = ""
    calls: Sequence[LLMCallRecord] = ()
    """The model requests behind it (for the audit), failed ones included."""

    @property
    def empty(self) -> bool:
        return self.to is None and not self.slots and not self.reason


@dataclass(frozen=True, slots=True)
class Understanding:
    """What the offline NLU made of one turn."""

    intent: str | None
    intent_score: float | None
    intent_scores: Mapping[str, float]
    parsed: Mapping[str, Parsed]
    invalid: Mapping[str, Invalid]
    open: tuple[str, ...] = ()
    """Targets of the state's own transitions that hold this turn, or would once the state's
    slots are filled: the moves a proposal can make."""


class Proposer(Protocol):
    """An LLM (or a test script) proposing a transition and slot values for a turn."""

    async def propose(
        self, spec: AgentSpec, state: AgentState, turn: TurnInput, understanding: Understanding
    ) -> Proposal | None: ...


class Phrase(str):
    """A state's reply that an LLM may phrase from `instruction`; the text itself is the state's
    `say`, spoken as it is when there is no LLM (or it fails)."""

    state: str
    instruction: str
    variables: Mapping[str, Any]
    """What the turn knew (slots, tools, counters…): for the model router's `when`."""

    def __new__(
        cls, text: str, *, state: str, instruction: str, variables: Mapping[str, Any]
    ) -> Phrase:
        phrase = super().__new__(cls, text)
        phrase.state = state
        phrase.instruction = instruction
        phrase.variables = variables
        return phrase


ReplyItem = str | AgentAction
"""Speech (perhaps a `Phrase`), or an action taken after the speech before it."""


@dataclass(slots=True)
class Outcome:
    """A decided turn: the new state, what to say and do (in order), and the audit entry."""

    state: AgentState
    reply: list[ReplyItem]
    audit: AuditEntry
    expected: list[str] | None
    """Phrases the caller is likely to say next (a grammar hint); None for free speech."""

    @property
    def speech(self) -> str:
        return " ".join(item for item in self.reply if isinstance(item, str) and item)


@dataclass
class Controller:
    """Decides turns for one agent; shared by all of its conversations (it holds no call state)."""

    spec: AgentSpec
    tools: ToolRegistry
    classifier: IntentClassifier
    proposer: Proposer | None = None
    today: datetime.date | None = None
    """The date relative dates resolve against; None means the day of each turn."""

    def new_state(self, context: Mapping[str, Any] | None = None) -> AgentState:
        return AgentState(
            agent=self.spec.name, state=self.spec.initial, context=dict(context or {})
        )

    async def decide(
        self, state: AgentState, turn: TurnInput, tool_context: ToolContext | None = None
    ) -> Outcome:
        started = time.perf_counter()
        run = _Turn(self, state.model_copy(deep=True), turn, tool_context)
        outcome = await run.decide()
        outcome.audit.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 3)
        return outcome

    def expected_phrases(self, state_name: str) -> list[str] | None:
        """What to listen for in `state_name`: its intents, its missing slots' phrases."""
        state = self.spec.states[state_name]
        phrases: list[str] = []
        for slot_name in state.collect:
            slot_phrases = expected_phrases(self.spec.slots[slot_name].rules())
            if not slot_phrases:
                return None  # free speech (a name, an email, text)
            phrases.extend(slot_phrases)
        intents = self.intents_in_scope(state_name)
        if intents:
            phrases.extend(self.classifier.expected_phrases(intents))
        return list(dict.fromkeys(phrases)) or None

    def intents_in_scope(self, state_name: str) -> list[str]:
        names: list[str] = []
        for _, transition in self.candidates(state_name):
            names.extend(_intents_of(transition))
        if REPEAT_INTENT in self.spec.intents:
            names.append(REPEAT_INTENT)
        return [n for n in dict.fromkeys(names) if n in self.spec.intents]

    def candidates(self, state_name: str) -> list[tuple[str, TransitionSpec]]:
        """The transitions checked in a state, in order: priority, then the state's own first."""
        state = self.spec.states[state_name]
        own = [
            (f"states.{state_name}.transitions[{i}]", t) for i, t in enumerate(state.transitions)
        ]
        shared = (
            []
            if state.final
            else [
                (f"global_transitions[{i}]", t) for i, t in enumerate(self.spec.global_transitions)
            ]
        )
        ordered = [*own, *shared]
        return sorted(ordered, key=lambda item: -item[1].priority)


def _intents_of(transition: TransitionSpec) -> list[str]:
    found = list(transition.when.intents())
    for sub in transition.when.any or ():
        found.extend(sub.intents())
    return found


class _Turn:
    """The working of one `decide` call."""

    def __init__(
        self,
        controller: Controller,
        state: AgentState,
        turn: TurnInput,
        tool_context: ToolContext | None,
    ) -> None:
        self.c = controller
        self.spec = controller.spec
        self.s = state
        self.turn = turn
        self.tool_context = tool_context
        self.reply: list[ReplyItem] = []
        self.ended_by_action = False
        self._pending_actions: list[AgentAction] = []
        self.adopted = False
        self.s.turn += 1
        self.audit = AuditEntry(
            turn=self.s.turn,
            generation=turn.generation,
            kind=turn.kind.value,
            text=turn.text,
            dtmf=turn.dtmf,
            state_before=self.s.state,
        )
        self.today = controller.today or datetime.date.today()

    async def decide(self) -> Outcome:
        if self.s.ended:
            self.audit.decision = "ignored (conversation over)"
        elif self.turn.kind is TurnKind.START and self.s.started:
            self._resume()
        elif self.turn.kind is TurnKind.START or not self.s.started:
            await self._start()
        elif self.turn.kind is TurnKind.HANGUP and self.turn.event == DROPPED:
            self.audit.decision = "paused (connection lost; may resume)"
            await self._run_tools(self.spec.on_drop, emit=False)
            self.reply.clear()
        elif self.turn.kind is TurnKind.HANGUP:
            await self._hangup()
        else:
            await self._respond()
        return self._outcome()

    # --- the kinds of turn -------------------------------------------------------------

    async def _start(self) -> None:
        self.s.started = True
        if self.spec.greeting:
            self._say(self.spec.greeting)
        self.audit.decision = f"start in {self.spec.initial}"
        await self._enter(self.spec.initial)

    def _resume(self) -> None:
        """The call came back: say so, then ask again what the state is waiting for."""
        state = self.spec.states[self.s.state]
        resumed = f"resume in {self.s.state}"
        self.audit.decision = f"{self.audit.decision}; {resumed}" if self.adopted else resumed
        self._say(self.spec.resume_say)
        self._say(state.reprompt or state.say or "")

    async def _hangup(self) -> None:
        facts = self._facts(None, event=self.turn.event or "hangup")
        chosen = self._check(self.s.state, facts)
        if chosen is not None:
            self.audit.decision = f"to {chosen.to} (caller hung up)"
            await self._run_tools(chosen.do, emit=False)
            self._move(chosen.to)
        else:
            self.audit.decision = "end (caller hung up)"
        self.s.ended = True
        self.reply.clear()

    async def _respond(self) -> None:
        state = self.spec.states[self.s.state]
        started = time.perf_counter()
        # Sentence embeddings are milliseconds of numpy: off the event loop.
        understanding = await asyncio.to_thread(self._understand, state)
        self.audit.timings_ms["nlu"] = round((time.perf_counter() - started) * 1000, 3)
        if self.c.proposer is not None:
            understanding = dataclasses.replace(understanding, open=self._open(understanding))
        proposal = await self._propose(understanding)
        accepted_slots = self._accept_slots(understanding, proposal)
        changes = {name: parsed.value for name, parsed in accepted_slots.items()}
        self.s.slots.update(changes)
        self.audit.slot_changes = changes
        for name, parsed in accepted_slots.items():
            self._read_back(name, parsed)

        if self.turn.kind is TurnKind.NO_INPUT:
            self.s.no_inputs += 1
            self.s.retries += 1
        elif not changes and understanding.intent is None:
            self.s.retries += 1

        facts = self._facts(understanding, event=self.turn.event)
        chosen = self._check(self.s.state, facts, proposal=proposal)
        if chosen is not None:
            self.audit.decision = f"to {chosen.to}"
            await self._take(chosen)
            return
        if understanding.intent == REPEAT_INTENT and self.s.last_said:
            self.audit.decision = "stay (repeat)"
            self._say_text(self.s.last_said)
            return
        self._reprompt(state, understanding, changes)

    # --- understanding -----------------------------------------------------------------

    def _understand(self, state: StateSpec) -> Understanding:
        text, dtmf = self.turn.text.strip(), self.turn.dtmf
        intent, score, scores = None, None, {}
        if text:
            among = self.c.intents_in_scope(self.s.state)
            if among:
                ranked = self.c.classifier.scores(text, among)
                scores = {m.name: round(m.score, 3) for m in ranked}
                if ranked and ranked[0].score >= self.c.classifier.threshold:
                    intent, score = ranked[0].name, round(ranked[0].score, 3)
        parsed: dict[str, Parsed] = {}
        invalid: dict[str, Invalid] = {}
        if text or dtmf:
            for slot_name in state.collect:
                result = extract(self.spec.slots[slot_name].rules(), text, dtmf, today=self.today)
                if isinstance(result, Parsed):
                    parsed[slot_name] = result
                elif isinstance(result, Invalid):
                    invalid[slot_name] = result
        for slot_name in state.collect:
            if slot_name in parsed:
                outcome = f"filled: {self._loggable(slot_name, parsed[slot_name].value)}"
            elif slot_name in invalid:
                outcome = f"invalid: {invalid[slot_name].reason}"
            else:
                outcome = "none"
            self.audit.slot_results[slot_name] = outcome
        self.audit.intent, self.audit.intent_score = intent, score
        self.audit.intent_scores = dict(scores)
        return Understanding(intent, score, scores, parsed, invalid)

    async def _propose(self, understanding: Understanding) -> Proposal | None:
        if self.c.proposer is None:
            return None
        started = time.perf_counter()
        proposal = await self.c.proposer.propose(self.spec, self.s, self.turn, understanding)
        self.audit.timings_ms["proposal"] = round((time.perf_counter() - started) * 1000, 3)
        if proposal is not None:
            self.audit.llm.extend(proposal.calls)
        if proposal is not None and not proposal.empty:
            self.audit.proposal = ProposalRecord(
                to=proposal.to,
                slots={name: self._loggable(name, v) for name, v in proposal.slots.items()},
                reason=proposal.reason,
            )
            if proposal.scratchpad:
                self.audit.scratchpad = proposal.scratchpad
                self.s.scratchpad.append(f"[{self.s.state}] {proposal.scratchpad}")
        return proposal

    def _open(self, understanding: Understanding) -> tuple[str, ...]:
        state = self.spec.states[self.s.state]
        facts = self._facts(understanding, event=self.turn.event)
        filled = dataclasses.replace(facts, filled=facts.filled | frozenset(state.collect))
        found = [
            t.to
            for t in state.transitions
            if holds(check(t.when, facts)) or holds(check(t.when, filled))
        ]
        return tuple(dict.fromkeys(found))

    def _accept_slots(
        self, understanding: Understanding, proposal: Proposal | None
    ) -> dict[str, Parsed]:
        """Slot values from NLU, plus proposed values for the others that pass the slot's own
        validation (the deterministic parsers come first)."""
        accepted = dict(understanding.parsed)
        if proposal is None or self.audit.proposal is None:
            return accepted
        for name, value in proposal.slots.items():
            spec = self.spec.slots.get(name)
            if spec is None:
                self.audit.proposal.refused_slots[name] = "no such slot"
                continue
            if name in understanding.parsed:
                self.audit.proposal.refused_slots[name] = "the slot's own parser understood it"
                continue
            result = extract(spec.rules(), str(value), "", today=self.today)
            if isinstance(result, Parsed):
                accepted[name] = result
            else:
                reason = result.reason if isinstance(result, Invalid) else "not a valid value"
                self.audit.proposal.refused_slots[name] = reason
        return accepted

    # --- deciding ----------------------------------------------------------------------

    def _facts(self, understanding: Understanding | None, *, event: str | None) -> Facts:
        state = self.spec.states[self.s.state]
        limit = state.max_retries if state.max_retries is not None else self.spec.max_retries
        return Facts(
            kind=self.turn.kind if understanding is not None else None,
            intent=understanding.intent if understanding else None,
            filled=frozenset(self.s.slots),
            invalid=frozenset(understanding.invalid) if understanding else frozenset(),
            dtmf=self.turn.dtmf if understanding is not None else "",
            event=event,
            retries_exhausted=self.s.retries > limit,
            variables=self._variables(),
        )

    def _check(
        self,
        state_name: str,
        facts: Facts,
        *,
        proposal: Proposal | None = None,
        without_input: bool = False,
    ) -> TransitionSpec | None:
        holding: list[TransitionSpec] = []
        for where, transition in self.c.candidates(state_name):
            if without_input and transition.when.needs_input:
                continue
            results = check(transition.when, facts)
            held = holds(results)
            self.audit.checks.append(
                TransitionCheck(
                    to=transition.to,
                    priority=transition.priority,
                    where=where,
                    held=held,
                    conditions=results,
                )
            )
            if held:
                holding.append(transition)
        record = self.audit.proposal
        if proposal is not None and proposal.to is not None and record is not None:
            match = next((t for t in holding if t.to == proposal.to), None)
            if match is not None:
                record.accepted = True
                return match
            record.refusal = (
                f"no transition from {state_name} to {proposal.to}"
                if all(t.to != proposal.to for _, t in self.c.candidates(state_name))
                else f"the conditions of every transition to {proposal.to} failed"
            )
        return holding[0] if holding else None

    async def _take(self, transition: TransitionSpec, depth: int = 0) -> None:
        """The edge: its tools run, its say (which may use their results) is spoken, its slots
        are cleared, its actions follow the say; then the next state is entered."""
        await self._run_tools(transition.do, emit=False)
        if self.adopted:
            return
        if transition.say:
            self._say(transition.say)
        self._clear(transition)
        self.reply.extend(self._pending_actions)
        self._pending_actions = []
        await self._enter(transition.to, depth)

    async def _enter(self, state_name: str, depth: int = 0) -> None:
        self._move(state_name)
        state = self.spec.states[state_name]
        failed = await self._run_tools(state.on_enter, emit=False)
        if self.adopted:
            return
        actions = self._pending_actions
        self._pending_actions = []
        if state.instruction and (state.llm or self.spec.llm):
            self._phrase(state_name, state.instruction, state.say or "")
        elif state.say:
            self._say(state.say)
        self.reply.extend(actions)
        if state.final:
            if not self.ended_by_action:
                self.reply.append(HangUp(f"final state {state_name}"))
                self.ended_by_action = True
            self.s.ended = True
            return
        if depth >= MAX_CHAINED_TRANSITIONS or self.ended_by_action:
            return
        facts = self._facts(None, event="tool_failed" if failed else None)
        chosen = self._check(state_name, facts, without_input=True)
        if chosen is not None:
            self.audit.decision += f", then to {chosen.to}"
            await self._take(chosen, depth + 1)

    def _clear(self, transition: TransitionSpec) -> None:
        for name in transition.clear:
            if self.s.slots.pop(name, None) is not None:
                self.audit.slot_changes[name] = None

    def _move(self, state_name: str) -> None:
        if state_name != self.s.state or not self.s.path:
            self.s.retries = 0
            self.s.no_inputs = 0
        self.s.state = state_name
        self.s.path.append(state_name)
        self.s.visits[state_name] = self.s.visits.get(state_name, 0) + 1

    def _reprompt(
        self, state: StateSpec, understanding: Understanding, changes: Mapping[str, Any]
    ) -> None:
        missing = [name for name in state.collect if name not in self.s.slots]
        if self.turn.kind is TurnKind.NO_INPUT:
            self.audit.decision = "stay (no input)"
            self._say(state.no_input_say or state.reprompt or state.say or "")
        elif changes and missing:
            self.audit.decision = f"stay (ask for {missing[0]})"
            slot = self.spec.slots[missing[0]]
            self._say(slot.prompt or state.reprompt or state.say or "")
        else:
            self.audit.decision = "stay (reprompt)"
            slot_prompt = self.spec.slots[missing[0]].prompt if missing else None
            self._say(state.reprompt or slot_prompt or state.say or "")

    # --- tools -------------------------------------------------------------------------

    async def _run_tools(self, calls: Sequence[ToolCallSpec], *, emit: bool = True) -> bool:
        """Run `calls` in order; their actions go to the reply now (`emit`) or when the state's
        say has been added. Returns True when one failed."""
        failed = False
        for call in calls:
            record = ToolRecord(name=call.tool)
            self.audit.tool_calls.append(record)
            started = time.perf_counter()
            try:
                args = {key: self._render_arg(value) for key, value in call.args.items()}
                record.args = {k: self._loggable(k, v) for k, v in args.items()}
                result = await self.c.tools.get(call.tool).call(args, self._tool_context())
            except (ToolError, AgentTemplateError) as exc:
                record.error = str(exc)
                self.s.tools[call.result_name] = {"ok": False, "error": str(exc)}
                failed = True
            else:
                if isinstance(result, AdoptConversation):
                    record.result = {"ok": True, "adopted": result.call_id}
                    self._adopt(result)
                    return False
                if isinstance(result, (Transfer, HangUp)):
                    self.ended_by_action = True
                if isinstance(result, (Transfer, HangUp, SendDtmf)):
                    (self.reply if emit else self._pending_actions).append(result)
                    result = {"ok": True, "action": type(result).__name__.lower()}
                record.result = result
                self.s.tools[call.result_name] = result
            record.ms = round((time.perf_counter() - started) * 1000, 3)
        return failed

    def _adopt(self, adopted: AdoptConversation) -> None:
        """Carry on another conversation (a resume code presented on this call): its state
        replaces this one's, and the agent picks up where that conversation was."""
        state = AgentState.model_validate(adopted.state.model_dump())
        state.turn = self.s.turn
        state.context = {**state.context, **self.s.context, "resumed_from": adopted.call_id}
        self.s = state
        self.adopted = True
        self.reply = [item for item in self.reply if not isinstance(item, str)]
        self._pending_actions = []
        self.audit.decision += f"; carried on conversation {adopted.call_id}"
        self._resume()

    def _render_arg(self, value: Any) -> Any:
        return render(value, self._variables()) if isinstance(value, str) else value

    def _tool_context(self) -> ToolContext:
        base = self.tool_context or ToolContext(call_id="", slots={}, context={})
        return dataclasses.replace(base, slots=dict(self.s.slots), context=dict(self.s.context))

    # --- speech ------------------------------------------------------------------------

    def _read_back(self, slot_name: str, parsed: Parsed) -> None:
        spec = self.spec.slots.get(slot_name)
        if spec is None or spec.confirm is None:
            return
        extra = {"value": parsed.value, "spoken_value": spoken(spec.rules(), parsed.value)}
        self._say(spec.confirm, extra)

    def _say(self, template: str, extra: Mapping[str, Any] | None = None) -> None:
        if not template:
            return
        try:
            text = render(template, {**self._variables(), **(extra or {})})
        except AgentTemplateError as exc:
            self.audit.tool_calls.append(ToolRecord(name="(template)", error=str(exc)))
            return
        self._say_text(text)

    def _say_text(self, text: str) -> None:
        if text:
            self.reply.append(text)

    def _phrase(self, state_name: str, instruction: str, say: str) -> None:
        variables = self._variables()
        try:
            text = render(say, variables)
            instruction = render(instruction, variables)
        except AgentTemplateError as exc:
            self.audit.tool_calls.append(ToolRecord(name="(template)", error=str(exc)))
            return
        self.reply.append(
            Phrase(text, state=state_name, instruction=instruction, variables=variables)
        )

    def _variables(self) -> dict[str, Any]:
        return template_variables(self.spec, self.s, self.turn)

    def _loggable(self, slot_name: str, value: Any) -> Any:
        spec = self.spec.slots.get(slot_name)
        return "***" if spec is not None and spec.sensitive else value

    def _outcome(self) -> Outcome:
        self.audit.state_after = self.s.state
        speech = " ".join(item for item in self.reply if isinstance(item, str) and item)
        self.audit.said = speech
        if speech:
            self.s.last_said = speech
        self.s.audit.append(self.audit)
        expected = None if self.s.ended else self.c.expected_phrases(self.s.state)
        return Outcome(self.s, self.reply, self.audit, expected)


def template_variables(spec: AgentSpec, state: AgentState, turn: TurnInput) -> dict[str, Any]:
    """What templates, conditions' `expr` and model routes see."""
    spoken_forms = {}
    for name, value in state.slots.items():
        slot = spec.slots.get(name)
        if slot is not None and not slot.sensitive:
            spoken_forms[name] = spoken(slot.rules(), value)
    return {
        "slots": dict(state.slots),
        "spoken": spoken_forms,
        "tools": dict(state.tools),
        "context": dict(state.context),
        "state": state.state,
        "visits": dict(state.visits),
        "retries": state.retries,
        "no_inputs": state.no_inputs,
        "input": turn.text,
        "dtmf": turn.dtmf,
    }
