"""`lint`: each problem found, with the line it is written on."""

from __future__ import annotations

import pytest

from opusagent.agent.fsa.lint import Finding, lint
from opusagent.agent.fsa.loader import AgentFileError

from .conftest import LoadText

GOOD = """\
name: good
initial: ask
slots:
  code: {type: digits, length: 3}
intents:
  human: {examples: [agent]}
states:
  ask:
    say: Code?
    collect: [code]
    transitions:
      - {to: done, when: {filled: code}, priority: 10}
      - {to: done, when: {retries_exhausted: true}}
  done: {say: "Thanks {{ slots.code }}.", final: true}
"""


def messages(findings: list[Finding]) -> list[tuple[int | None, str]]:
    return [(f.line, f.message) for f in findings]


def test_a_good_agent_has_no_findings(load_text: LoadText) -> None:
    assert lint(load_text(GOOD)) == []


def test_unreachable_state(load_text: LoadText) -> None:
    text = GOOD + "  orphan: {say: Hello., final: true}\n"

    findings = lint(load_text(text))

    assert messages(findings) == [(15, "state 'orphan' cannot be reached from 'ask'")]


def test_dead_end_state(load_text: LoadText) -> None:
    text = GOOD.replace(
        "{to: done, when: {filled: code}, priority: 10}",
        "{to: stuck, when: {filled: code}, priority: 10}",
    )
    text += "  stuck: {say: Hm.}\n"

    findings = lint(load_text(text))

    assert (15, "dead end: a non-final state with no transitions") in messages(findings)


def test_state_without_a_retry_path(load_text: LoadText) -> None:
    text = GOOD.replace("      - {to: done, when: {retries_exhausted: true}}\n", "")

    (finding,) = lint(load_text(text))

    assert finding.line == 8
    assert "retries_exhausted" in finding.message


def test_unknown_intent_slot_and_tool_result(load_text: LoadText) -> None:
    text = GOOD.replace(
        "{to: done, when: {retries_exhausted: true}}",
        "{to: done, when: {intent: bye, filled: pin, expr: tools.x.ok}, priority: 5}\n"
        "      - {to: done, when: {retries_exhausted: true}}",
    )

    found = messages(lint(load_text(text)))

    assert (13, "unknown intent 'bye' (declared: human)") in found
    assert (13, "unknown slot 'pin'") in found
    assert (13, "tools.x: no tool call saves a result under that name") in found


def test_slot_compared_with_a_value_of_the_wrong_type(load_text: LoadText) -> None:
    text = GOOD.replace("{filled: code}", '{expr: "slots.code == 123"}')

    found = messages(lint(load_text(text)))

    assert (12, "slots.code is a digits slot; compared with 123") in found


def test_tied_priorities(load_text: LoadText) -> None:
    text = GOOD.replace("priority: 10}", "priority: 0}")

    found = messages(lint(load_text(text)))

    assert any("ties with transitions[0] (to done) at priority 0" in m for _, m in found)


def test_unknown_tool_and_missing_argument(load_text: LoadText) -> None:
    text = GOOD.replace(
        "    collect: [code]\n",
        "    collect: [code]\n    on_enter: [{tool: fetch}, {tool: transfer, args: {}}]\n",
    )

    found = messages(lint(load_text(text)))

    assert any(line == 11 and m.startswith("unknown tool 'fetch'") for line, m in found)
    assert (11, "transfer needs argument 'target'") in found


def test_template_that_does_not_render(load_text: LoadText) -> None:
    text = GOOD.replace("Thanks {{ slots.code }}.", "Thanks {{ slots.pin }}.")

    found = messages(lint(load_text(text)))

    assert (14, "unknown slot 'pin' in slots.pin") in found


def test_schema_errors_name_the_line(load_text: LoadText) -> None:
    text = GOOD.replace("collect: [code]", "collect: [code]\n    colect: [code]")

    with pytest.raises(AgentFileError) as caught:
        load_text(text)

    assert "agent.yaml:11: states.ask.colect: Extra inputs are not permitted" in str(caught.value)


def test_unknown_transition_target_names_the_line(load_text: LoadText) -> None:
    text = GOOD.replace("{to: done, when: {filled: code}", "{to: nowhere, when: {filled: code}")

    with pytest.raises(AgentFileError, match="unknown state 'nowhere'"):
        load_text(text)


def test_bad_yaml_names_the_line(load_text: LoadText) -> None:
    with pytest.raises(AgentFileError, match=r"agent.yaml:4: not valid YAML"):
        load_text("name: x\nstates:\n  a: [\n")
