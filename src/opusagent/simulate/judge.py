"""The judge: a scenario's criteria checked against the callee's record (path, transcript,
audit log), no LLM needed. Each verdict that fails says which turn, what was expected and what
happened instead, from the audit: what the caller said, what the agent understood, which
conditions held and what it decided.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from opusagent.agent.fsa.audit import AuditEntry
from opusagent.simulate.callers import normalized
from opusagent.simulate.record import CalleeRecord
from opusagent.simulate.scenarios import Scenario

_ENTERED = re.compile(r"\bto (\w+)")


@dataclass(frozen=True, slots=True)
class Verdict:
    criterion: str
    passed: bool
    explanation: str
    turn: int | None = None
    """The turn of the agent's audit the verdict is about, if one."""
    judge: str = "rules"
    """Who judged: the rules, or `llm <model>` (a rubric line of the LLM judge)."""
    unjudged: Literal["error", "skipped"] | None = None
    """Why the criterion could not be judged: an error (never a pass), or skipped (no LLM to
    judge it; it fails nothing)."""


def judge(scenario: Scenario, record: CalleeRecord, *, duration_s: float) -> list[Verdict]:
    """Every criterion of `scenario`, in order: success first, then failure conditions."""
    success, failure = scenario.success, scenario.failure
    verdicts: list[Verdict] = []
    reached = record.states_reached()
    for state in success.states:
        verdicts.append(_reached(record, state, reached))
    if success.final_state is not None:
        verdicts.append(_final(record, success.final_state))
    held = record.slots()
    for name, value in success.slots.items():
        verdicts.append(_slot(record, name, value, held))
    for tool in success.tools:
        verdicts.append(_tool_called(record, tool))
    if success.max_turns is not None:
        turns = record.turns()
        verdicts.append(
            Verdict(
                f"at most {success.max_turns} turns",
                turns <= success.max_turns,
                f"the call took {turns} turns (caller inputs and silences the agent answered)",
            )
        )
    if success.max_duration_s is not None:
        verdicts.append(
            Verdict(
                f"at most {success.max_duration_s:g} s",
                duration_s <= success.max_duration_s,
                f"the call lasted {duration_s:.1f} s",
            )
        )
    for state in failure.states:
        verdicts.append(_never_reached(record, state))
    for tool in failure.tools:
        verdicts.append(_never_called(record, tool))
    for phrase in failure.phrases:
        verdicts.append(_never_said(record, phrase))
    return verdicts


def describe_turn(entry: AuditEntry) -> str:
    """One turn as the audit tells it: input, understanding, decision."""
    if entry.kind == "speech":
        said = f"the caller said {entry.text!r}"
    elif entry.kind == "dtmf":
        said = f"the caller keyed {entry.dtmf!r}"
    elif entry.kind == "no_input":
        said = "the caller said nothing"
    else:
        said = f"({entry.kind})"
    understood = []
    if entry.intent:
        understood.append(f"intent {entry.intent} ({entry.intent_score or 0:.2f})")
    understood.extend(f"{slot} {result}" for slot, result in entry.slot_results.items())
    heard = f"; understood: {', '.join(understood)}" if understood else "; understood nothing"
    return f"turn {entry.turn} in {entry.state_before}: {said}{heard}; decided {entry.decision!r}"


def _entered(entry: AuditEntry) -> list[str]:
    return _ENTERED.findall(entry.decision) or [entry.state_after]


def _path(record: CalleeRecord) -> str:
    return " → ".join(record.states_reached()) or "(none)"


def _why_not(record: CalleeRecord, state: str) -> tuple[str, int | None]:
    """Why the agent never went to `state`: the last turn that checked a way there, or else
    the last turn of the call."""
    for entry in reversed(record.audit):
        checks = [c for c in entry.checks if c.to == state and not c.held]
        if checks:
            failed = [
                f"{c.condition} ({c.detail})" if c.detail else c.condition
                for c in checks[-1].conditions
                if not c.held
            ]
            reason = "; ".join(failed) or "a higher-priority transition fired first"
            return (
                f"{describe_turn(entry)}; the transition to {state} "
                f"({checks[-1].where}) did not hold: {reason}",
                entry.turn,
            )
    if record.audit:
        last = record.audit[-1]
        return f"no turn checked a transition to {state}; last, {describe_turn(last)}", last.turn
    return "the agent decided nothing", None


def _reached(record: CalleeRecord, state: str, reached: list[str]) -> Verdict:
    criterion = f"reaches {state}"
    if state in reached:
        turn = next((e.turn for e in record.audit if state in _entered(e)), None)
        return Verdict(criterion, True, f"reached at turn {turn}", turn)
    why, turn = _why_not(record, state)
    return Verdict(
        criterion, False, f"expected to reach {state}; the path was {_path(record)}. {why}", turn
    )


def _final(record: CalleeRecord, state: str) -> Verdict:
    criterion = f"ends in {state}"
    if record.final_state == state:
        return Verdict(criterion, True, f"ended in {state} ({record.end_reason})")
    why, turn = _why_not(record, state)
    return Verdict(
        criterion,
        False,
        f"expected to end in {state}; it ended in {record.final_state} "
        f"({record.end_reason or 'no end reason'}), path {_path(record)}. {why}",
        turn,
    )


def _slot(record: CalleeRecord, name: str, expected: object, held: dict[str, object]) -> Verdict:
    criterion = f"holds {name} = {expected}"
    value = held.get(name)
    if value is not None and str(value) == str(expected):
        return Verdict(criterion, True, f"{name} = {value}")
    tries = [e for e in record.audit if name in e.slot_results]
    if not tries:
        return Verdict(criterion, False, f"expected {name} = {expected}; no turn collected {name}")
    last = tries[-1]
    now = "it was not held at the end" if value is None else f"it held {value}"
    return Verdict(
        criterion,
        False,
        f"expected {name} = {expected}; {now}. Last collected at {describe_turn(last)}",
        last.turn,
    )


def _tool_called(record: CalleeRecord, tool: str) -> Verdict:
    criterion = f"calls {tool}"
    calls = [(e, c) for e in record.audit for c in e.tool_calls if c.name == tool]
    good = [(e, c) for e, c in calls if not c.error]
    if good:
        entry, call = good[0]
        return Verdict(criterion, True, f"called at turn {entry.turn} with {call.args}", entry.turn)
    if calls:
        entry, call = calls[-1]
        return Verdict(
            criterion,
            False,
            f"expected {tool} to succeed; at turn {entry.turn} it failed: {call.error}",
            entry.turn,
        )
    last = record.audit[-1] if record.audit else None
    tail = f"; last, {describe_turn(last)}" if last is not None else ""
    return Verdict(
        criterion,
        False,
        f"expected a call to {tool}; it was never called (path {_path(record)}){tail}",
        last.turn if last else None,
    )


def _never_reached(record: CalleeRecord, state: str) -> Verdict:
    criterion = f"never reaches {state}"
    for entry in record.audit:
        if state in _entered(entry):
            return Verdict(
                criterion,
                False,
                f"expected never to reach {state}; it did at {describe_turn(entry)}",
                entry.turn,
            )
    return Verdict(criterion, True, f"path {_path(record)}")


def _never_called(record: CalleeRecord, tool: str) -> Verdict:
    criterion = f"never calls {tool}"
    for entry in record.audit:
        if any(call.name == tool for call in entry.tool_calls):
            return Verdict(
                criterion,
                False,
                f"expected {tool} never to be called; it was at {describe_turn(entry)}",
                entry.turn,
            )
    return Verdict(criterion, True, f"{tool} was not called")


def _never_said(record: CalleeRecord, phrase: str) -> Verdict:
    criterion = f"never says {phrase!r}"
    wanted = normalized(phrase)
    for entry in record.audit:
        if wanted and wanted in normalized(entry.said):
            return Verdict(
                criterion,
                False,
                f"expected the agent never to say {phrase!r}; at turn {entry.turn} "
                f"({entry.state_before} → {entry.state_after}) it said {entry.said!r}",
                entry.turn,
            )
    return Verdict(criterion, True, "never said")
