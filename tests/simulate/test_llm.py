"""The LLM caller and the LLM judge: with the real llama.cpp server on loopback (SmolLM2-135M:
a weak model, so the tests look at where words and verdicts come from, not at passing), without
an LLM (skipped, never passed), and with an endpoint that does not answer (an error verdict)."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agent.llm.llama_server import MODEL, LlamaServerMissing, llama_server
from opusagent.agent.fsa.loader import load_agent
from opusagent.config import Settings
from opusagent.simulate.files import SimulationFileError
from opusagent.simulate.judge import Verdict
from opusagent.simulate.llm import SimulationLLM, simulation_llm
from opusagent.simulate.llm_caller import spoken
from opusagent.simulate.llm_judge import judge_by_llm
from opusagent.simulate.personas import DEFAULT_PERSONA
from opusagent.simulate.record import CalleeRecord, Line
from opusagent.simulate.report import run_html, write_reports
from opusagent.simulate.runner import (
    Plan,
    RunResult,
    caller_kind,
    run_all,
    run_one,
    status_of,
)
from opusagent.simulate.scenarios import LoadedScenario, load_scenario
from opusagent.simulate.server import AgentServer, serve_agent, served_settings

from .helpers import AGENTS, Outline

LLM_CALLER = """\
name: llm_lost_card
agent: bank_card
goal: Block my lost card and get a replacement.
facts: {card_last4: "4217", birth_date: "March third, nineteen eighty"}
caller:
  llm: {instructions: Start by saying that you lost your card.}
success:
  states: [identify]
limits: {max_caller_turns: 2}
"""
RUBRIC = ["The agent greets the caller.", "The agent asks for the card's last four digits."]
TRANSCRIPT = [
    Line(speaker="agent", text="Thank you for calling Opus Bank. How can I help you today?"),
    Line(speaker="caller", text="I lost my card."),
    Line(speaker="agent", text="Please say or key in the last four digits of your card."),
]


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real llama.cpp server on loopback; a missing `.venv-llm` fails (CI runs these)."""
    try:
        with llama_server(tmp_path_factory.mktemp("llama") / "server.log") as url:
            yield url
    except LlamaServerMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture
async def llama(llama_url: str) -> AsyncIterator[SimulationLLM]:
    llm = simulation_llm(Settings(llm_base_url=llama_url, llm_model=MODEL))
    assert llm is not None
    try:
        yield llm
    finally:
        await llm.aclose()


def scenario_file(folder: Path, text: str) -> LoadedScenario:
    path = folder / "scenario.yaml"
    path.write_text(text)
    return load_scenario(path)


def plan_of(loaded: LoadedScenario) -> Plan:
    return Plan(loaded, DEFAULT_PERSONA, 1, "text", "twilio")


def judged_record() -> CalleeRecord:
    return CalleeRecord(
        call_id="c1",
        agent="bank_card",
        final_state="identify",
        path=["welcome", "identify"],
        transcript=TRANSCRIPT,
        audit=[],
    )


@pytest.mark.slow
async def test_an_llm_caller_speaks_the_models_words_to_the_agent(
    llama: SimulationLLM, tmp_path: Path
) -> None:
    loaded = scenario_file(tmp_path, LLM_CALLER)
    settings = served_settings(Settings(), AGENTS / "bank.yaml", tmp_path)
    async with serve_agent(settings, "text") as server:
        [result] = await run_all(
            [plan_of(loaded)], server, None, tmp_path, concurrency=1, llm=llama
        )

    assert result.status in ("passed", "failed"), result.error
    assert result.caller == f"LLM {MODEL} at {llama.base_url}"
    said = [e for e in result.events if e.who == "caller" and e.kind == "speech"]
    assert said and all(e.note.startswith(f"LLM caller ({MODEL})") for e in said)
    assert result.record is not None
    heard = [entry.text for entry in result.record.audit if entry.kind == "speech"]
    assert heard and heard == [e.text for e in said][: len(heard)], "the agent got the words"
    assert [v.criterion for v in result.verdicts] == ["reaches identify"]
    write_reports([result], load_agent(AGENTS / "bank.yaml").spec, tmp_path)
    report = json.loads((tmp_path / "llm_lost_card-1.json").read_text())
    assert report["caller"] == result.caller
    lines = [e["text"] for e in report["events"] if e["note"].startswith("LLM caller")]
    assert lines == [e.text for e in said], "the report's transcript has the model's lines"


async def test_without_an_llm_an_llm_caller_is_skipped_with_the_reason(tmp_path: Path) -> None:
    loaded = scenario_file(tmp_path, LLM_CALLER)
    nowhere = AgentServer("http://127.0.0.1:9", agent=None)

    result = await run_one(plan_of(loaded), nowhere, None, tmp_path)

    assert result.status == "skipped"
    assert result.error == (
        "the caller is an LLM (caller.llm) and no LLM is configured "
        "(set OPUSAGENT_LLM_BASE_URL and OPUSAGENT_LLM_MODEL)"
    )


def test_without_an_llm_a_script_given_too_answers_and_says_so(tmp_path: Path) -> None:
    text = LLM_CALLER.replace("caller:\n", "caller:\n  script: [{say: I lost my card.}]\n")
    loaded = scenario_file(tmp_path, text)

    assert caller_kind(plan_of(loaded), None) == "script (caller.llm: no LLM is configured)"


def test_a_caller_needs_a_script_an_agent_or_an_llm(tmp_path: Path) -> None:
    text = LLM_CALLER.replace(
        "  llm: {instructions: Start by saying that you lost your card.}\n", "  otherwise: next\n"
    )

    with pytest.raises(SimulationFileError, match=r"a caller has a script, an agent .* or an llm"):
        scenario_file(tmp_path, text)


def test_an_empty_rubric_line_is_refused(tmp_path: Path) -> None:
    text = LLM_CALLER + "judge: {rubric: ['Polite.', ' ']}\n"

    with pytest.raises(SimulationFileError, match=r"scenario.yaml:\d+: judge.rubric: .*empty"):
        scenario_file(tmp_path, text)


@pytest.mark.slow
async def test_the_llm_judge_gives_a_verdict_per_rubric_line(
    llama: SimulationLLM, tmp_path: Path
) -> None:
    scenario = scenario_file(tmp_path, LLM_CALLER + f"judge: {{rubric: {RUBRIC}}}\n").scenario

    verdicts = await judge_by_llm(scenario, judged_record(), llama)

    assert [v.criterion for v in verdicts] == RUBRIC
    assert all(v.judge == f"llm {MODEL}" and v.unjudged is None for v in verdicts)
    assert all(v.explanation and v.explanation != "(no reason given)" for v in verdicts)


async def test_an_unreachable_llm_is_an_error_verdict_naming_it(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    llm = simulation_llm(Settings(llm_base_url=url, llm_model=MODEL, llm_max_retries=0))
    assert llm is not None
    scenario = scenario_file(tmp_path, LLM_CALLER + f"judge: {{rubric: {RUBRIC}}}\n").scenario
    try:
        verdicts = await judge_by_llm(scenario, judged_record(), llm)
    finally:
        await llm.aclose()

    assert [(v.passed, v.unjudged) for v in verdicts] == [(False, "error")] * 2
    assert all(v.explanation.startswith(f"the LLM judge failed: {url}: ") for v in verdicts)
    assert status_of(verdicts) == "error"


async def test_without_an_llm_rubric_lines_are_skipped(tmp_path: Path) -> None:
    scenario = scenario_file(tmp_path, LLM_CALLER + f"judge: {{rubric: {RUBRIC}}}\n").scenario

    verdicts = await judge_by_llm(scenario, judged_record(), None)

    assert [(v.criterion, v.judge, v.unjudged) for v in verdicts] == [
        (line, "llm", "skipped") for line in RUBRIC
    ]
    assert status_of(verdicts) == "passed", "a skipped line fails nothing"


def test_the_criteria_table_shows_who_judged_and_what_was_not_judged(tmp_path: Path) -> None:
    by = f"llm {MODEL}"
    verdicts = [
        Verdict("reaches identify", True, "reached at turn 1", 1),
        Verdict(RUBRIC[0], True, "It says thank you for calling.", judge=by),
        Verdict(RUBRIC[1], False, "the LLM judge failed: refused", judge=by, unjudged="error"),
        Verdict("Polite.", True, "not judged: no LLM", judge="llm", unjudged="skipped"),
    ]
    result = RunResult(plan_of(scenario_file(tmp_path, LLM_CALLER)), "error", verdicts=verdicts)

    page = run_html(result, load_agent(AGENTS / "bank.yaml").spec, tmp_path, graph=False)

    cells = Outline.of(page).text
    start = cells.index("reaches identify")
    assert cells[start : start + 17] == [
        *("reaches identify", "pass", "reached at turn 1", "1", "rules"),
        *(RUBRIC[0], "pass", "It says thank you for calling.", by),
        *(RUBRIC[1], "ERROR", "the LLM judge failed: refused", by),
        *("Polite.", "skipped", "not judged: no LLM", "llm"),
    ]


@pytest.mark.parametrize(
    ("answer", "words", "hangs_up"),
    [
        ("I lost my card.\nAgent: Thank you.", "I lost my card.", False),
        ('Caller: "My card ends in 4217."', "My card ends in 4217.", False),
        ("Thank you, goodbye. HANG UP", "Thank you, goodbye.", True),
        ("Please don't hang up on me.", "Please don't hang up on me.", False),
        ("", "", False),
    ],
)
def test_the_callers_words_are_the_first_line_of_the_answer(
    answer: str, words: str, hangs_up: bool
) -> None:
    assert spoken(answer) == (words, hangs_up)
