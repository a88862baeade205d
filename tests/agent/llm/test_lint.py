"""`opusagent agent lint` on the LLM parts of agent files."""

from __future__ import annotations

from opusagent.agent.fsa.lint import lint

from ..fsa.conftest import LoadText

AGENT = """
name: a
initial: ask
states:
  ask:
    say: Hello.
    instruction: Greet the caller.
    scratchpad: Think.
    transitions: [{to: done}]
  route:
    llm: {model: fast, routes: [{model: big, when: "retries >"}]}
    instruction: Say hi.
    transitions: [{to: done}]
  done: {say: Bye., final: true}
"""


def test_llm_parts_without_a_model_and_broken_routes_are_reported(load_text: LoadText) -> None:
    found = {(f.path, f.severity, f.message.split(":")[0]) for f in lint(load_text(AGENT))}

    assert ("states.ask.instruction", "warning", "no llm here") in found
    assert ("states.ask.scratchpad", "warning", "no llm here") in found
    assert ("states.route.say", "warning", "no say") in found
    assert ("states.route.llm.routes[0].when", "error", "expression does not parse") in found
