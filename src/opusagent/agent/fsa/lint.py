"""Static checks of an agent file, each finding with the line it is about.

Errors make an agent unfit to serve; warnings are worth a look. Checked: every state reachable
from the initial one; no dead ends; every state that waits for the caller has a way out when the
caller stays silent or is not understood (`retries_exhausted`); conditions name declared slots,
intents and tool results, and compare slots with values of their type; tools exist and get the
arguments they take; no two transitions of a state tie at one priority; templates and
expressions parse and render.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from opusagent.agent.fsa.loader import LoadedAgent, PathPart, dotted
from opusagent.agent.fsa.spec import AgentSpec, Condition, ToolCallSpec, TransitionSpec
from opusagent.agent.fsa.templates import AgentTemplateError, check_syntax, evaluate, render
from opusagent.agent.nlu.slots import SlotKind

Severity = Literal["error", "warning"]
_PARSER = ImmutableSandboxedEnvironment()
_SAMPLES: dict[SlotKind, Any] = {
    "digits": "4217",
    "number": 3,
    "amount": {"amount": "25.50", "currency": "USD"},
    "date": "2026-03-03",
    "time": "15:30",
    "yes_no": True,
    "choice": "option",
    "phone": "+15550100",
    "email": "alex@example.com",
    "name": "Alex Smith",
    "text": "some words",
}
_CONSTANT_TYPES: dict[SlotKind, tuple[type, ...]] = {
    "digits": (str,),
    "phone": (str,),
    "email": (str,),
    "name": (str,),
    "text": (str,),
    "choice": (str,),
    "date": (str,),
    "time": (str,),
    "number": (int, float),
    "yes_no": (bool,),
}


@dataclass(frozen=True, slots=True)
class Finding:
    severity: Severity
    path: str
    line: int | None
    message: str

    def format(self, file: str) -> str:
        where = f"{file}:{self.line}" if self.line is not None else file
        return f"{where}: {self.severity}: {self.path}: {self.message}"


class _Anything:
    """Stands in for tool results and call facts when templates are test-rendered."""

    def __getattr__(self, name: str) -> _Anything:
        return self

    def __getitem__(self, key: object) -> _Anything:
        return self

    def __str__(self) -> str:
        return "something"

    def __bool__(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return True

    def __lt__(self, other: object) -> bool:
        return True

    __le__ = __gt__ = __ge__ = __lt__
    __hash__ = object.__hash__


def lint(agent: LoadedAgent) -> list[Finding]:
    """Every problem found in `agent`, in file order."""
    linter = _Linter(agent)
    linter.run()
    return sorted(linter.findings, key=lambda f: (f.line or 0, f.path))


class _Linter:
    def __init__(self, agent: LoadedAgent) -> None:
        self.agent = agent
        self.spec: AgentSpec = agent.spec
        self.findings: list[Finding] = []
        self.results = self._tool_results()

    def add(self, severity: Severity, path: Sequence[PathPart], message: str) -> None:
        self.findings.append(
            Finding(severity, dotted(path), self.agent.source.line_of(path), message)
        )

    def run(self) -> None:
        self._reachability()
        for name, state in self.spec.states.items():
            self._state(name)
            for i, transition in enumerate(state.transitions):
                self._transition(["states", name, "transitions", i], transition)
            for i, call in enumerate(state.on_enter):
                self._tool_call(["states", name, "on_enter", i], call)
            for i, tool_name in enumerate(state.tools):
                if tool_name not in self.agent.tools:
                    self.add("error", ["states", name, "tools", i], f"unknown tool {tool_name!r}")
            for key in ("say", "reprompt", "no_input_say", "instruction"):
                template = getattr(state, key)
                if template:
                    self._template(["states", name, key], template)
            self._llm(name)
        for i, transition in enumerate(self.spec.global_transitions):
            self._transition(["global_transitions", i], transition)
        for name, slot in self.spec.slots.items():
            if slot.prompt:
                self._template(["slots", name, "prompt"], slot.prompt)
            if slot.confirm:
                sample = _SAMPLES[slot.type]
                extra = {"value": sample, "spoken_value": str(sample)}
                self._template(["slots", name, "confirm"], slot.confirm, extra)
            if slot.pattern is not None:
                self._regex(["slots", name, "pattern"], slot.pattern)
        for key in ("greeting", "resume_say"):
            template = getattr(self.spec, key)
            if template:
                self._template([key], template)

    # --- the graph ---------------------------------------------------------------------

    def _reachability(self) -> None:
        reached = {self.spec.initial}
        frontier = [self.spec.initial]
        while frontier:
            name = frontier.pop()
            for transition in self._outgoing(name):
                if transition.to not in reached:
                    reached.add(transition.to)
                    frontier.append(transition.to)
        for name in self.spec.states:
            if name not in reached:
                self.add(
                    "error",
                    ["states", name],
                    f"state {name!r} cannot be reached from {self.spec.initial!r}",
                )

    def _outgoing(self, name: str) -> list[TransitionSpec]:
        state = self.spec.states[name]
        if state.final:
            return []
        return [*state.transitions, *self.spec.global_transitions]

    def _state(self, name: str) -> None:
        state = self.spec.states[name]
        path: list[PathPart] = ["states", name]
        if state.final:
            if state.transitions:
                self.add("warning", path, "a final state's transitions are never taken")
            if state.collect:
                self.add("warning", path, "a final state collects nothing: the call ends")
            return
        outgoing = self._outgoing(name)
        if not outgoing:
            self.add("error", path, "dead end: a non-final state with no transitions")
            return
        waits = any(t.when.needs_input for t in state.transitions) or bool(state.collect)
        passes = [t for t in state.transitions if not t.when.needs_input]
        if waits or not passes:
            escapes = [t for t in outgoing if _mentions_retries(t.when)]
            if not escapes:
                self.add(
                    "error",
                    path,
                    "no way out when the caller stays silent or is not understood: add a "
                    "transition `when: {retries_exhausted: true}` (here or global)",
                )
        elif all(_has_conditions(t.when) for t in passes) and not waits:
            self.add(
                "warning",
                path,
                "a state that does not wait for the caller should end with a transition "
                "without conditions, or it may stop here",
            )
        priorities: dict[int, str] = {}
        candidates = [
            *((f"transitions[{i}]", t) for i, t in enumerate(state.transitions)),
            *((f"global_transitions[{i}]", t) for i, t in enumerate(self.spec.global_transitions)),
        ]
        for where, transition in candidates:
            if transition.priority in priorities:
                self.add(
                    "error",
                    [*path, *_split(where)] if where.startswith("transitions") else path,
                    f"{where} (to {transition.to}) ties with {priorities[transition.priority]} at "
                    f"priority {transition.priority}: give them different priorities",
                )
            else:
                priorities[transition.priority] = f"{where} (to {transition.to})"

    # --- transitions and conditions ----------------------------------------------------

    def _transition(self, path: list[PathPart], transition: TransitionSpec) -> None:
        self._condition([*path, "when"], transition.when)
        for i, call in enumerate(transition.do):
            self._tool_call([*path, "do", i], call)
        for i, slot in enumerate(transition.clear):
            if slot not in self.spec.slots:
                self.add("error", [*path, "clear", i], f"unknown slot {slot!r}")
        if transition.say:
            self._template([*path, "say"], transition.say)

    def _condition(self, path: list[PathPart], condition: Condition) -> None:
        for intent in condition.intents():
            if intent not in self.spec.intents:
                known = ", ".join(sorted(self.spec.intents)) or "none"
                self.add(
                    "error", [*path, "intent"], f"unknown intent {intent!r} (declared: {known})"
                )
        for key, slots in (
            ("filled", condition.filled_slots()),
            ("missing", condition.missing_slots()),
            ("invalid", [condition.invalid] if condition.invalid else []),
        ):
            for slot in slots:
                if slot not in self.spec.slots:
                    self.add("error", [*path, key], f"unknown slot {slot!r}")
        if condition.expr is not None:
            self._expression([*path, "expr"], condition.expr)
        if condition.dtmf is not None and condition.dtmf.startswith("^"):
            self._regex([*path, "dtmf"], condition.dtmf)
        elif condition.dtmf is not None and not re.fullmatch(r"[0-9*#A-D]+", condition.dtmf):
            self.add("error", [*path, "dtmf"], f"{condition.dtmf!r} is not DTMF digits or a ^regex")
        for i, sub in enumerate(condition.any or ()):
            self._condition([*path, "any", i], sub)

    def _expression(self, path: list[PathPart], source: str) -> None:
        try:
            check_syntax(source, expression=True)
            tree = _PARSER.parse("{{ " + source + " }}")
        except (AgentTemplateError, Exception) as exc:
            self.add("error", path, f"expression does not parse: {exc}")
            return
        self._references(path, tree)
        for compare in tree.find_all(nodes.Compare):
            self._comparison(path, compare)
        try:
            evaluate(source, self._variables())
        except AgentTemplateError as exc:
            self.add("error", path, str(exc))

    def _references(self, path: list[PathPart], tree: nodes.Node) -> None:
        for attribute in tree.find_all(nodes.Getattr):
            owner = attribute.node
            if not isinstance(owner, nodes.Name):
                continue
            if owner.name in ("slots", "spoken") and attribute.attr not in self.spec.slots:
                self.add(
                    "error",
                    path,
                    f"unknown slot {attribute.attr!r} in {owner.name}.{attribute.attr}",
                )
            elif owner.name == "tools" and attribute.attr not in self.results:
                self.add(
                    "error",
                    path,
                    f"tools.{attribute.attr}: no tool call saves a result under that name",
                )
            elif owner.name == "visits" and attribute.attr not in self.spec.states:
                self.add("error", path, f"visits.{attribute.attr}: unknown state")

    def _comparison(self, path: list[PathPart], compare: nodes.Compare) -> None:
        operands = [compare.expr, *(op.expr for op in compare.ops)]
        slot_kind = None
        for operand in operands:
            if (
                isinstance(operand, nodes.Getattr)
                and isinstance(operand.node, nodes.Name)
                and operand.node.name == "slots"
                and operand.attr in self.spec.slots
            ):
                slot_kind = self.spec.slots[operand.attr].type
                slot_name = operand.attr
        if slot_kind is None or slot_kind not in _CONSTANT_TYPES:
            return
        for operand in operands:
            if isinstance(operand, nodes.Const) and operand.value is not None:
                value = operand.value
                wanted = _CONSTANT_TYPES[slot_kind]
                if not isinstance(value, wanted) or (
                    isinstance(value, bool) and bool not in wanted
                ):
                    self.add(
                        "error",
                        path,
                        f"slots.{slot_name} is a {slot_kind} slot; compared with {value!r}",
                    )

    # --- tools and templates -----------------------------------------------------------

    def _tool_call(self, path: list[PathPart], call: ToolCallSpec) -> None:
        if call.tool not in self.agent.tools:
            known = ", ".join(sorted(self.agent.tools.tools))
            self.add("error", [*path, "tool"], f"unknown tool {call.tool!r} (known: {known})")
            return
        tool = self.agent.tools.get(call.tool)
        fields = tool.arguments.model_fields
        for name in call.args:
            if name not in fields:
                self.add("error", [*path, "args", name], f"{call.tool} takes no argument {name!r}")
        for name, info in fields.items():
            if info.is_required() and name not in call.args:
                self.add("error", [*path, "args"], f"{call.tool} needs argument {name!r}")
        for name, value in call.args.items():
            if isinstance(value, str):
                self._template([*path, "args", name], value)

    def _template(
        self, path: list[PathPart], source: str, extra: dict[str, Any] | None = None
    ) -> None:
        try:
            check_syntax(source)
            tree = _PARSER.parse(source)
        except (AgentTemplateError, Exception) as exc:
            self.add("error", path, f"template does not parse: {exc}")
            return
        self._references(path, tree)
        try:
            render(source, {**self._variables(), **(extra or {})})
        except AgentTemplateError as exc:
            self.add("error", path, str(exc))

    def _llm(self, name: str) -> None:
        """An LLM's parts of a state: what needs a model has one, routes' `when` parse."""
        state = self.spec.states[name]
        path: list[PathPart] = ["states", name]
        llm = state.llm or self.spec.llm
        if llm is None:
            for key in ("instruction", "scratchpad"):
                if getattr(state, key):
                    self.add("warning", [*path, key], f"no llm here: the {key} is never used")
            return
        if state.instruction and not state.say:
            self.add("warning", [*path, "say"], "no say: nothing is said when the LLM fails")
        llm_path: list[PathPart] = [*path, "llm"] if state.llm else ["llm"]
        for i, route in enumerate(llm.routes):
            if route.when is not None:
                self._expression([*llm_path, "routes", i, "when"], route.when)

    def _regex(self, path: list[PathPart], pattern: str) -> None:
        try:
            re.compile(pattern)
        except re.error as exc:
            self.add("error", path, f"not a valid regular expression: {exc}")

    def _variables(self) -> dict[str, Any]:
        samples = {name: _SAMPLES[slot.type] for name, slot in self.spec.slots.items()}
        anything = _Anything()
        return {
            "slots": samples,
            "spoken": {name: str(value) for name, value in samples.items()},
            "tools": {name: anything for name in self.results},
            "context": anything,
            "state": self.spec.initial,
            "visits": dict.fromkeys(self.spec.states, 1),
            "retries": 0,
            "no_inputs": 0,
            "input": "some words",
        }

    def _tool_results(self) -> set[str]:
        names: set[str] = set()
        for call in _all_tool_calls(self.spec):
            names.add(call.result_name)
        return names


def _all_tool_calls(spec: AgentSpec) -> Iterator[ToolCallSpec]:
    for state in spec.states.values():
        yield from state.on_enter
        for transition in state.transitions:
            yield from transition.do
    for transition in spec.global_transitions:
        yield from transition.do


def _mentions_retries(condition: Condition) -> bool:
    return (
        bool(condition.retries_exhausted)
        or bool(condition.no_input)
        or any(_mentions_retries(sub) for sub in condition.any or ())
    )


def _has_conditions(condition: Condition) -> bool:
    return condition != Condition()


def _split(where: str) -> list[PathPart]:
    name, _, index = where.partition("[")
    return [name, int(index.rstrip("]"))]
