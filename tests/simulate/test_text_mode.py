"""The runner in text mode: each example's scenario pack against its agent served on loopback
(the web chat), a broken agent's precise explanation, concurrent runs, and a clean stop."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from opusagent.cli import app as cli
from opusagent.config import Settings
from opusagent.simulate.runner import RunResult, run_all
from opusagent.simulate.scenarios import load_scenario, load_scenarios
from opusagent.simulate.server import serve_agent, served_settings

from .helpers import AGENTS, PACKS, SCENARIOS, plans, simulate

LOST_CARD = SCENARIOS / "bank" / "lost_card.yaml"


def broken_bank(folder: Path) -> Path:
    """A copy of the bank agent whose "yes, go ahead" goes to goodbye, not card_replaced."""
    for name in ("bank_tools.py", "knowledge"):
        source = AGENTS / name
        if source.is_dir():
            shutil.copytree(source, folder / name)
        else:
            shutil.copy(source, folder / name)
    text = (AGENTS / "bank.yaml").read_text()
    right = '      - to: card_replaced\n        when: {expr: "slots.go_ahead == true"}'
    assert right in text
    broken = folder / "bank.yaml"
    broken.write_text(text.replace(right, right.replace("card_replaced", "goodbye")))
    return broken


@pytest.mark.parametrize("pack", PACKS)
async def test_every_scenario_of_the_pack_passes_in_text_mode(pack: str, tmp_path: Path) -> None:
    results = await simulate(AGENTS / f"{pack}.yaml", SCENARIOS / pack, tmp_path)

    judged = [r for r in results if r.status != "skipped"]
    problems = {
        r.plan.label: [v.explanation for v in r.verdicts if not v.passed] or r.error
        for r in judged
        if r.status != "passed"
    }
    assert not problems
    assert len(judged) >= 3
    assert all(r.record is not None and r.record.audit for r in judged)


async def test_audio_only_scenarios_are_skipped_in_text_mode(tmp_path: Path) -> None:
    silent = load_scenario(SCENARIOS / "bank" / "silent_caller.yaml")

    [result] = await simulate(AGENTS / "bank.yaml", [silent], tmp_path)

    assert (result.status, result.error) == ("skipped", "written for audio mode only")


async def test_a_broken_agent_fails_with_a_precise_explanation(tmp_path: Path) -> None:
    agent = broken_bank(tmp_path)

    [result] = await simulate(agent, [load_scenario(LOST_CARD)], tmp_path / "out")

    assert result.status == "failed"
    failed = {v.criterion: v for v in result.verdicts if not v.passed}
    assert set(failed) == {"reaches card_replaced", "ends in card_replaced"}
    reached = failed["reaches card_replaced"]
    assert reached.turn == 5
    assert reached.explanation == (
        "expected to reach card_replaced; the path was welcome → identify → lookup_account → "
        "verify → check_identity → confirm_block → goodbye. no turn checked a transition to "
        "card_replaced; last, turn 5 in confirm_block: the caller said 'Yes.'; understood: "
        "go_ahead filled: True; decided 'to goodbye'"
    )
    assert "it ended in goodbye" in failed["ends in card_replaced"].explanation


async def test_concurrent_runs_do_not_interfere(tmp_path: Path) -> None:
    scenarios = [
        load_scenario(SCENARIOS / "bank" / name)
        for name in ("lost_card.yaml", "wrong_birth_date_thrice.yaml")
    ]

    results = await simulate(AGENTS / "bank.yaml", scenarios, tmp_path, runs=4, concurrency=8)

    assert [r.status for r in results] == ["passed"] * 8
    assert len({r.call_id for r in results}) == 8
    for result in results:
        assert result.record is not None
        said = [e.text for e in result.events if e.who == "caller" and e.kind == "speech"]
        heard = [line.text for line in result.record.transcript if line.speaker == "caller"]
        assert heard == said, result.plan.label
    finals = {r.plan.scenario.name: r.record.final_state for r in results if r.record}
    assert finals == {"lost_card": "card_replaced", "wrong_birth_date_thrice": "handoff"}


async def test_cancelling_stops_cleanly_with_what_was_done(tmp_path: Path) -> None:
    scenarios = load_scenarios(SCENARIOS / "bank")
    settings = served_settings(Settings(), AGENTS / "bank.yaml", tmp_path)
    finished: list[RunResult] = []
    async with serve_agent(settings, "text") as server:
        running: asyncio.Task[list[RunResult]]

        def first_done(result: RunResult) -> None:
            finished.append(result)
            if len(finished) == 1:
                running.cancel()

        running = asyncio.create_task(
            run_all(plans(scenarios), server, None, tmp_path, concurrency=1, on_done=first_done)
        )
        results = await running

    statuses = [r.status for r in results]
    assert statuses[0] == "passed"
    assert statuses.count("interrupted") >= len(scenarios) - 2
    assert set(statuses) <= {"passed", "skipped", "interrupted"}


def test_the_command_passes_and_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    args = ["simulate", "--agent", str(AGENTS / "bank.yaml"), "--scenario", str(LOST_CARD)]

    result = CliRunner().invoke(cli, [*args, "--mode", "text", "--out", str(out)])

    assert result.exit_code == 0, result.output
    assert "lost_card" in result.output
    assert {p.name for p in out.iterdir()} >= {
        "index.html",
        "summary.json",
        "lost_card-1.html",
        "lost_card-1.json",
    }


def test_the_command_fails_when_a_run_fails_and_says_why(tmp_path: Path) -> None:
    agent = broken_bank(tmp_path)
    args = ["simulate", "--agent", str(agent), "--scenario", str(LOST_CARD), "--mode", "text"]

    result = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "out")])

    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "✗ reaches card_replaced: expected to reach card_replaced" in output


def test_a_scenario_for_another_agent_is_refused(tmp_path: Path) -> None:
    args = ["simulate", "--agent", str(AGENTS / "clinic_triage.yaml"), "--scenario", str(LOST_CARD)]

    result = CliRunner().invoke(cli, [*args, "--mode", "text", "--out", str(tmp_path)])

    assert result.exit_code == 1
    assert "written for agent 'bank_card', not 'clinic_triage'" in " ".join(result.output.split())
