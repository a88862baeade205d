"""`graph`: the state graph as Mermaid and DOT."""

from __future__ import annotations

import shutil

import pytest

from opusagent.agent.fsa.graph import GraphError, dot, mermaid, render_graph
from opusagent.agent.fsa.loader import load_agent

from .conversation import EXAMPLES

BANK = load_agent(EXAMPLES / "bank.yaml").spec


def test_mermaid_draws_every_transition() -> None:
    text = mermaid(BANK)

    assert text.startswith("stateDiagram-v2\n    [*] --> welcome\n")
    assert "    welcome --> identify: intent lost_card\n" in text
    assert "    any_state --> handoff: intent agent_human\n" in text
    assert "    card_replaced --> [*]\n" in text
    edges = sum(len(s.transitions) for s in BANK.states.values()) + len(BANK.global_transitions)
    assert text.count(" --> ") == edges + 1 + sum(s.final for s in BANK.states.values())


def test_dot_marks_final_states_and_quotes_labels() -> None:
    text = dot(BANK)

    assert '"handoff" [peripheries=2];' in text
    assert '"lookup_account" -> "verify" [label="tools.account.found"];' in text


def test_unknown_format_is_refused() -> None:
    with pytest.raises(GraphError, match=r"unknown graph format '\.png'"):
        render_graph(BANK, ".png")


def test_svg_through_graphviz() -> None:
    assert "<svg" in render_graph(BANK, ".svg")


def test_svg_without_graphviz_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)

    with pytest.raises(GraphError, match="apt-get install graphviz"):
        render_graph(BANK, ".svg")
