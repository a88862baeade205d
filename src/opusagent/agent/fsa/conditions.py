"""Checking a transition's conditions against what one turn established."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opusagent.agent.fsa.audit import ConditionResult
from opusagent.agent.fsa.spec import Condition
from opusagent.agent.fsa.templates import AgentTemplateError, evaluate
from opusagent.call.stages import TurnKind


@dataclass(frozen=True, slots=True)
class Facts:
    """What is true this turn, as conditions see it."""

    kind: TurnKind | None
    """The turn's kind; None when a state is entered and checked without new input."""
    intent: str | None = None
    filled: frozenset[str] = frozenset()
    invalid: frozenset[str] = frozenset()
    dtmf: str = ""
    event: str | None = None
    retries_exhausted: bool = False
    variables: Mapping[str, Any] = field(default_factory=dict)
    """For `expr`: slots, tools, context, counters."""


def check(condition: Condition, facts: Facts) -> list[ConditionResult]:
    """Each part of `condition` with whether it held (all must hold for the condition to)."""
    results: list[ConditionResult] = []
    if condition.intent is not None:
        wanted = condition.intents()
        results.append(
            ConditionResult(
                condition=f"intent in {wanted}" if len(wanted) > 1 else f"intent == {wanted[0]}",
                held=facts.intent in wanted,
                detail=f"intent was {facts.intent or 'none'}",
            )
        )
    for slot in condition.filled_slots():
        results.append(ConditionResult(condition=f"filled {slot}", held=slot in facts.filled))
    for slot in condition.missing_slots():
        results.append(ConditionResult(condition=f"missing {slot}", held=slot not in facts.filled))
    if condition.invalid is not None:
        results.append(
            ConditionResult(
                condition=f"invalid {condition.invalid}", held=condition.invalid in facts.invalid
            )
        )
    if condition.expr is not None:
        results.append(_expression(condition.expr, facts))
    if condition.dtmf is not None:
        results.append(
            ConditionResult(
                condition=f"dtmf {condition.dtmf}",
                held=_dtmf_matches(condition.dtmf, facts.dtmf),
                detail=f"keyed {facts.dtmf or 'nothing'}",
            )
        )
    if condition.no_input is not None:
        silent = facts.kind is TurnKind.NO_INPUT
        results.append(
            ConditionResult(
                condition=f"no_input is {condition.no_input}", held=silent is condition.no_input
            )
        )
    if condition.retries_exhausted is not None:
        results.append(
            ConditionResult(
                condition=f"retries_exhausted is {condition.retries_exhausted}",
                held=facts.retries_exhausted is condition.retries_exhausted,
            )
        )
    if condition.event is not None:
        results.append(
            ConditionResult(
                condition=f"event == {condition.event}",
                held=facts.event == condition.event,
                detail=f"event was {facts.event or 'none'}",
            )
        )
    if condition.any is not None:
        held = [all(r.held for r in check(sub, facts)) for sub in condition.any]
        results.append(
            ConditionResult(
                condition=f"any of {len(held)}",
                held=any(held),
                detail=", ".join("yes" if h else "no" for h in held),
            )
        )
    return results


def holds(results: list[ConditionResult]) -> bool:
    return all(result.held for result in results)


def _expression(source: str, facts: Facts) -> ConditionResult:
    try:
        value = evaluate(source, facts.variables)
    except AgentTemplateError as exc:
        return ConditionResult(condition=f"expr {source}", held=False, detail=f"error: {exc}")
    return ConditionResult(condition=f"expr {source}", held=bool(value), detail=f"= {value!r}")


def _dtmf_matches(wanted: str, keyed: str) -> bool:
    if not keyed:
        return False
    if wanted.startswith("^"):
        return re.fullmatch(wanted, keyed) is not None
    return keyed == wanted
