"""The LLM as proposer: on each caller turn in free speech, it proposes the next state, slot
values and a reason (and scratchpad reasoning, when the state asks for it) by calling a
`propose` tool whose arguments' schema lists exactly the choices the state has. The controller
accepts or refuses each part by the agent file's rules.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from opusagent.agent.fsa.controller import Proposal, TurnInput, Understanding, template_variables
from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.fsa.state import AgentState
from opusagent.agent.llm.chat import ChatRequest, Message, Tool
from opusagent.agent.llm.prompts import conversation, describe_agent
from opusagent.agent.llm.router import ModelRouter, Route, RouteFailedError

log = logging.getLogger(__name__)

TOOL_NAME = "propose"
MAX_TOKENS = 256
"""Room for a proposal. Its strings have no `maxLength`: llama.cpp's grammar for one costs
about ten times the time per token (measured: 44 s instead of 6 s for a welcome proposal)."""


class LLMProposer:
    """A `Proposer` asking each state's routed model."""

    def __init__(self, router: ModelRouter) -> None:
        self._router = router

    async def propose(
        self, spec: AgentSpec, state: AgentState, turn: TurnInput, understanding: Understanding
    ) -> Proposal | None:
        if not turn.text.strip():
            return None  # keys, silence and call events are the rules' alone
        variables = template_variables(spec, state, turn)
        route = self._router.route(spec, state.state, "propose", variables)
        if route is None or not route.spec.propose:
            return None
        tool = proposal_tool(spec, state.state, understanding.open)
        messages = _messages(spec, state, turn, understanding)

        def build(model: str) -> ChatRequest:
            return _request(route, model, messages, tool)

        try:
            result, record = await self._router.complete(route, build)
        except RouteFailedError as exc:
            log.warning("proposal in %s failed: %s", state.state, exc)
            return Proposal(calls=(exc.record,))
        call = next((c for c in result.tool_calls if c.name == TOOL_NAME), None)
        if call is None:
            record.error = "the model answered without proposing"
            return Proposal(calls=(record,))
        arguments = call.arguments
        return Proposal(
            to=_text_or_none(arguments.get("to")),
            slots=_slot_values(arguments.get("slots")),
            reason=str(arguments.get("reason") or ""),
            scratchpad=str(arguments.get("scratchpad") or ""),
            calls=(record,),
        )


def proposal_tool(spec: AgentSpec, state_name: str, open_targets: Sequence[str] = ()) -> Tool:
    """The `propose` tool for a state: its next states, its slots, a reason.

    The next states offered are those the rules could take this turn (`open_targets`); when
    there are none, all of the state's, so the model's view is still on the record (and the
    rules refuse it). Staying is not offered: the rules stay by themselves when nothing holds.
    """
    state = spec.states[state_name]
    properties: dict[str, Any] = {}
    if state.scratchpad:
        properties["scratchpad"] = {
            "type": "string",
            "description": f"Your private notes (never spoken): {state.scratchpad}",
        }
    targets = next_states(spec, state_name)
    offered = [name for name in targets if name in open_targets] or list(targets)
    if offered:
        properties["to"] = {
            "enum": offered,
            "description": "The next state: "
            + "; ".join(f"{name}: {targets[name]}" for name in offered),
        }
    if state.collect:
        properties["slots"] = {
            "type": "object",
            "properties": {
                name: {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "description": _slot_description(spec, name),
                }
                for name in state.collect
            },
            "required": list(state.collect),
            "description": "What the caller said for each slot, in their words; null if nothing.",
        }
    properties["reason"] = {"type": "string", "description": "Why, in a few words."}
    return Tool(
        name=TOOL_NAME,
        description="Propose what the call should do next; the agent's rules decide.",
        parameters={
            "type": "object",
            "properties": properties,
            "required": list(properties),
        },
    )


def next_states(spec: AgentSpec, state_name: str) -> dict[str, str]:
    """The states the state's own transitions lead to, each with what it is for. The agent's
    global transitions (a human, goodbye…) are the rules' alone: they are not offered."""
    found: dict[str, str] = {}
    for transition in spec.states[state_name].transitions:
        if transition.to in found:
            continue
        target = spec.states[transition.to]
        found[transition.to] = (
            transition.description or target.description or target.say or transition.to
        )
    return found


def _slot_description(spec: AgentSpec, name: str) -> str:
    slot = spec.slots[name]
    return slot.description or f"a {slot.type.replace('_', ' ')}"


def _messages(
    spec: AgentSpec, state: AgentState, turn: TurnInput, understanding: Understanding
) -> list[Message]:
    current = spec.states[state.state]
    lines = [
        describe_agent(spec),
        "You do not speak to the caller here: you propose what the call should do next, by "
        "calling the propose tool. The agent's rules accept or refuse your proposal.",
        f"Current state: {state.state}. {current.description or current.say or ''}".strip(),
    ]
    if current.instruction:
        lines.append(f"In this state: {current.instruction}")
    if state.slots:
        known = {
            name: "***" if spec.slots[name].sensitive else value
            for name, value in state.slots.items()
            if name in spec.slots
        }
        lines.append(f"Known so far: {known}.")
    if understanding.intent is not None:
        lines.append(f"A classifier heard the intent {understanding.intent}.")
    if understanding.parsed:
        lines.append(f"Parsers understood the slots {', '.join(understanding.parsed)}.")
    return [Message("system", "\n".join(lines)), *conversation(state.history, turn.text)]


def _request(route: Route, model: str, messages: list[Message], tool: Tool) -> ChatRequest:
    return ChatRequest(
        model=model,
        messages=messages,
        tools=(tool,),
        tool_choice=TOOL_NAME,
        max_tokens=MAX_TOKENS,
        temperature=route.spec.temperature,
        timeout_s=route.spec.timeout_s,
    )


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _slot_values(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {
        str(name): str(slot_value).strip()
        for name, slot_value in value.items()
        if slot_value is not None and str(slot_value).strip()
    }
