"""Drawing an agent's states and transitions: Mermaid, Graphviz DOT, and SVG through `dot`.

Global transitions are drawn once, from a `*` node standing for every non-final state.
"""

from __future__ import annotations

import shutil
import subprocess

from opusagent.agent.fsa.spec import AgentSpec, Condition, TransitionSpec

ANY_STATE = "*"


class GraphError(RuntimeError):
    """The graph could not be drawn in the format asked for."""


def edge_label(transition: TransitionSpec) -> str:
    return describe(transition.when)


def describe(condition: Condition) -> str:
    """A short reading of a condition (`intent lost_card`, `filled card_last4`, …)."""
    parts: list[str] = []
    if condition.intent is not None:
        parts.append("intent " + "|".join(condition.intents()))
    parts.extend(f"filled {s}" for s in condition.filled_slots())
    parts.extend(f"missing {s}" for s in condition.missing_slots())
    if condition.invalid:
        parts.append(f"invalid {condition.invalid}")
    if condition.expr:
        parts.append(condition.expr)
    if condition.dtmf:
        parts.append(f"dtmf {condition.dtmf}")
    if condition.no_input:
        parts.append("no input")
    if condition.retries_exhausted:
        parts.append("retries exhausted")
    if condition.event:
        parts.append(f"event {condition.event}")
    if condition.any:
        parts.append("any(" + "; ".join(describe(c) for c in condition.any) + ")")
    return " and ".join(parts) or "always"


def _edges(spec: AgentSpec) -> list[tuple[str, str, str]]:
    edges = [
        (name, t.to, edge_label(t))
        for name, state in spec.states.items()
        for t in state.transitions
    ]
    edges.extend((ANY_STATE, t.to, edge_label(t)) for t in spec.global_transitions)
    return edges


def mermaid(spec: AgentSpec) -> str:
    lines = ["stateDiagram-v2", f"    [*] --> {spec.initial}"]
    for name, state in spec.states.items():
        if state.final:
            lines.append(f"    {name} --> [*]")
    for source, target, label in _edges(spec):
        origin = "any_state" if source == ANY_STATE else source
        lines.append(f"    {origin} --> {target}: {_mermaid_text(label)}")
    if spec.global_transitions:
        lines.append('    state "any state" as any_state')
    return "\n".join(lines) + "\n"


def dot(spec: AgentSpec) -> str:
    lines = [f'digraph "{spec.name}" {{', "    rankdir=LR;", "    node [shape=box, style=rounded];"]
    lines.append('    "__start" [shape=point];')
    lines.append(f'    "__start" -> "{spec.initial}";')
    for name, state in spec.states.items():
        if state.final:
            lines.append(f'    "{name}" [peripheries=2];')
    if spec.global_transitions:
        lines.append(f'    "{ANY_STATE}" [label="any state", style=dashed];')
    for source, target, label in _edges(spec):
        lines.append(f'    "{source}" -> "{target}" [label="{_dot_text(label)}"];')
    lines.append("}")
    return "\n".join(lines) + "\n"


def svg(spec: AgentSpec) -> str:
    """The graph as SVG, drawn by Graphviz's `dot` (Debian package `graphviz`)."""
    program = shutil.which("dot")
    if program is None:
        raise GraphError(
            "SVG needs Graphviz's `dot` (apt-get install graphviz); or write .mmd or .dot instead"
        )
    done = subprocess.run(
        [program, "-Tsvg"], input=dot(spec), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise GraphError(f"dot failed: {done.stderr.strip()}")
    return done.stdout


def render_graph(spec: AgentSpec, suffix: str) -> str:
    formats = {".mmd": mermaid, ".md": mermaid, ".dot": dot, ".gv": dot, ".svg": svg}
    try:
        return formats[suffix](spec)
    except KeyError:
        raise GraphError(f"unknown graph format {suffix!r}: use .mmd, .dot or .svg") from None


def _mermaid_text(label: str) -> str:
    return label.replace(":", " ").replace(";", ",").replace("\n", " ")


def _dot_text(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"')
