"""Dual-agent calls: our outbound agent (examples/agents/callers/card_holder.yaml), on its own
Call with the offline voice stack, calls the bank agent over Twilio Media Streams on loopback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from opusagent.agent.fsa.lint import lint
from opusagent.agent.fsa.loader import load_agent
from opusagent.cli import app as cli
from opusagent.config import Settings
from opusagent.simulate.dual import outbound_agent, run_dual
from opusagent.simulate.personas import DEFAULT_PERSONA
from opusagent.simulate.report import write_reports
from opusagent.simulate.runner import Plan
from opusagent.simulate.scenarios import load_scenario
from opusagent.simulate.server import serve_agent, served_settings

from .helpers import AGENTS, Outline

CARD_HOLDER = AGENTS / "callers" / "card_holder.yaml"
GREETING_WORDS = {"thank", "calling", "bank", "block", "lost", "stolen", "help", "today"}
"""Words of the bank's greeting a free-speech recogniser gets right."""
PAST_THE_GREETING = """\
name: card_holder_calls
agent: bank_card
modes: [audio]
facts: {{card_last4: "4217", birth_date: "March third, nineteen eighty"}}
caller:
  agent: {caller}
success:
  states: [identify]
limits: {{max_duration_s: 25}}
"""


@pytest.mark.slow
async def test_an_outbound_agent_calls_the_bank_and_each_hears_the_other(
    tmp_path: Path,
) -> None:
    (tmp_path / "scenario.yaml").write_text(PAST_THE_GREETING.format(caller=CARD_HOLDER))
    plan = Plan(load_scenario(tmp_path / "scenario.yaml"), DEFAULT_PERSONA, 1, "audio", "twilio")
    settings = served_settings(Settings(), AGENTS / "bank.yaml", tmp_path)
    async with (
        serve_agent(settings, "audio") as server,
        outbound_agent(Settings(), CARD_HOLDER, None) as outbound,
    ):
        result = await run_dual(plan, server, outbound, tmp_path)

    assert result.status == "passed", [v.explanation for v in result.verdicts] or result.error
    assert result.record is not None and result.caller_record is not None
    assert result.caller == f"agent card_holder ({CARD_HOLDER}) over twilio"
    assert result.caller_path[:2] == ["waiting", "report"]
    heard_by_bank = [e.text for e in result.record.audit if e.kind == "speech"]
    assert any("card" in text.lower() for text in heard_by_bank), heard_by_bank
    heard_by_caller = " ".join(
        line.text for line in result.caller_record.transcript if line.speaker == "caller"
    )
    assert len(GREETING_WORDS & set(heard_by_caller.split())) >= 3, heard_by_caller
    kinds = {(e.who, e.kind) for e in result.events}
    assert {("agent", "speech"), ("caller", "speech")} <= kinds
    assert result.recording is not None and result.recording.is_file()
    write_reports([result], load_agent(AGENTS / "bank.yaml").spec, tmp_path)
    page = Outline.of((tmp_path / "card_holder_calls-1.html").read_text())
    assert {"criteria", "caller-audit", "audit", "transcript", "recording"} <= page.ids


def test_the_command_needs_a_scenario_or_a_calling_agent(tmp_path: Path) -> None:
    args = ["simulate", "--agent", str(AGENTS / "bank.yaml"), "--out", str(tmp_path)]

    result = CliRunner().invoke(cli, args)

    assert result.exit_code == 1
    assert "give --scenario (a scenario file or pack), or --caller-agent" in result.output


def test_a_dual_agent_call_is_not_a_text_conversation(tmp_path: Path) -> None:
    args = ["simulate", "--agent", str(AGENTS / "bank.yaml"), "--caller-agent", str(CARD_HOLDER)]

    result = CliRunner().invoke(cli, [*args, "--mode", "text", "--out", str(tmp_path)])

    assert result.exit_code == 1
    assert "a dual-agent call (--caller-agent) is an audio call" in result.output


def test_the_example_calling_agent_lints_clean() -> None:
    assert lint(load_agent(CARD_HOLDER)) == []
