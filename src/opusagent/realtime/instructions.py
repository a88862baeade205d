"""What the model is told in each state of a Finite State Agent: instructions and tools.

The controller decides every turn; the model only voices it. Each state's instructions say who
the agent is, the state's own `instruction` (how to phrase the reply), and the reply the
controller decided, on a last line starting with `Say:`; the tools are the state's `tools`.
"""

from __future__ import annotations

from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.tools.registry import ToolRegistry
from opusagent.realtime.events import FunctionTool

SAY = "Say:"
"""Starts the line holding the words the controller decided; the model speaks them."""
CALL = "Call:"
"""Starts a line asking the model to call a tool (`Call: <tool> <JSON arguments>`), written in a
state's `instruction` when the state wants the model to fetch something before it speaks."""

RULES = (
    "You are on a phone call. Speak the words after 'Say:' on the last line to the caller, "
    "in your own natural voice, without adding or leaving out anything. Do not decide what "
    "happens next: the call's rules do."
)


def state_instructions(spec: AgentSpec, state: str, reply: str) -> str:
    """The instructions for the reply `reply` in `state`."""
    lines = [f"You are the voice of {spec.name.replace('_', ' ')}: {spec.description}".strip()]
    lines.append(f"Speak the language {spec.language}.")
    instruction = spec.states[state].instruction
    if instruction:
        lines.append(instruction.strip())
    lines.append(RULES)
    lines.append(f"{SAY} {' '.join(reply.split())}")
    return "\n".join(lines)


def state_tools(spec: AgentSpec, tools: ToolRegistry, state: str) -> list[FunctionTool]:
    """The function tools the model may call in `state` (its `tools` that are registered)."""
    found = []
    for name in spec.states[state].tools:
        if name in tools:
            schema = tools.get(name).schema()
            found.append(
                FunctionTool(
                    name=name, description=schema["description"], parameters=schema["parameters"]
                )
            )
    return found
