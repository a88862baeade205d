"""The LLM judge: a scenario's rubric judged on the callee's transcript by the configured LLM.

The model is made to call a `verdicts` tool whose arguments' schema has one required entry per
rubric line (passed, reason), as the proposer's `propose` tool is forced (`agent/llm/proposer`):
exactly one verdict per line. Without an LLM each line is reported skipped; a failed request is
an error verdict naming the endpoint, never a pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opusagent.agent.llm.chat import LLMError, Message, Tool
from opusagent.simulate.judge import Verdict
from opusagent.simulate.llm import NO_LLM, SimulationLLM
from opusagent.simulate.record import CalleeRecord
from opusagent.simulate.scenarios import Judge, Scenario

TOOL_NAME = "verdicts"
TOKENS_PER_LINE = 120
"""Room for one verdict and its reason (the arguments' JSON is cut short past it)."""
SYSTEM = (
    "You judge a recorded phone call between a caller and a phone agent. For each numbered "
    "criterion, decide from the transcript alone whether the agent met it, and say why in one "
    "sentence. Call the verdicts tool."
)


def verdicts_tool(rubric: list[str]) -> Tool:
    """One required `criterion_<n>` per rubric line: {passed, reason}."""
    properties = {
        _key(number): {
            "type": "object",
            "description": line,
            "properties": {
                "passed": {"type": "boolean", "description": "The agent met this criterion."},
                "reason": {"type": "string", "description": "Why, from the transcript."},
            },
            "required": ["passed", "reason"],
        }
        for number, line in enumerate(rubric, 1)
    }
    return Tool(
        name=TOOL_NAME,
        description="Your verdict on each criterion of the rubric.",
        parameters={"type": "object", "properties": properties, "required": list(properties)},
    )


async def judge_by_llm(
    scenario: Scenario, record: CalleeRecord, llm: SimulationLLM | None
) -> list[Verdict]:
    """A verdict per rubric line of `scenario.judge` (none without a rubric)."""
    judge = scenario.judge
    if judge is None:
        return []
    if llm is None:
        return [
            Verdict(line, True, f"not judged: {NO_LLM}", judge="llm", unjudged="skipped")
            for line in judge.rubric
        ]
    by = f"llm {llm.model(judge.model)}"
    try:
        result = await llm.complete(
            judge.model,
            [Message("system", SYSTEM), Message("user", _call(scenario, record, judge))],
            max_tokens=TOKENS_PER_LINE * len(judge.rubric) + 40,
            tool=verdicts_tool(judge.rubric),
        )
    except LLMError as exc:
        return _errors(judge, by, f"the LLM judge failed: {exc}")
    call = next((c for c in result.tool_calls if c.name == TOOL_NAME), None)
    if call is None:
        return _errors(judge, by, f"the LLM judge answered without verdicts: {result.text[:200]!r}")
    return [
        _verdict(line, call.arguments.get(_key(number)), by)
        for number, line in enumerate(judge.rubric, 1)
    ]


def _call(scenario: Scenario, record: CalleeRecord, judge: Judge) -> str:
    lines = [f"The caller's goal: {scenario.goal or '(not given)'}", "", "Transcript:"]
    for line in record.transcript:
        said = line.text or (f"(keyed {line.dtmf})" if line.dtmf else "")
        if said:
            cut = " (cut off)" if line.interrupted else ""
            lines.append(f"{line.speaker}: {said}{cut}")
    lines += ["", f"The call ended in the agent's state {record.final_state}.", "", "Criteria:"]
    lines += [f"{number}. {line}" for number, line in enumerate(judge.rubric, 1)]
    return "\n".join(lines)


def _verdict(line: str, answer: object, by: str) -> Verdict:
    if not isinstance(answer, Mapping) or not isinstance(answer.get("passed"), bool):
        return Verdict(
            line,
            False,
            f"the LLM judge gave no verdict for this line: {answer!r}",
            judge=by,
            unjudged="error",
        )
    verdict: Mapping[str, Any] = answer
    reason = str(verdict.get("reason") or "").strip() or "(no reason given)"
    return Verdict(line, verdict["passed"], reason, judge=by)


def _errors(judge: Judge, by: str, message: str) -> list[Verdict]:
    return [Verdict(line, False, message, judge=by, unjudged="error") for line in judge.rubric]


def _key(number: int) -> str:
    return f"criterion_{number}"
