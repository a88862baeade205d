"""`opusagent agent lint|graph|chat|schema` on the example agents."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from opusagent.cli import app

from .conversation import EXAMPLES

BANK = EXAMPLES / "bank.yaml"
runner = CliRunner()


def test_lint_passes_on_an_example() -> None:
    result = runner.invoke(app, ["agent", "lint", str(BANK)])

    assert result.exit_code == 0, result.output
    assert "ok (11 states" in result.output


def test_lint_fails_with_line_numbers(tmp_path: Path) -> None:
    shutil.copytree(EXAMPLES, tmp_path, dirs_exist_ok=True)
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        BANK.read_text().replace("when: {intent: lost_card}", "when: {intent: lost_cards}"),
        encoding="utf-8",
    )

    result = runner.invoke(app, ["agent", "lint", str(broken)])

    assert result.exit_code == 1
    assert "broken.yaml:99: error: states.welcome.transitions[0].when.intent: unknown intent" in (
        result.output.replace("\n", "")
    )


def test_lint_reports_a_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["agent", "lint", str(tmp_path / "absent.yaml")])

    assert result.exit_code == 1
    assert "cannot read the agent file" in result.output


def test_graph_writes_mermaid_and_dot(tmp_path: Path) -> None:
    for suffix, start in ((".mmd", "stateDiagram-v2"), (".dot", 'digraph "bank_card"')):
        out = tmp_path / f"bank{suffix}"
        result = runner.invoke(app, ["agent", "graph", str(BANK), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert out.read_text().startswith(start)


def test_chat_walks_the_happy_path_and_exports_the_audit(tmp_path: Path) -> None:
    audit = tmp_path / "audit.json"
    script = "I lost my card\n4 2 1 7\nmarch 3rd 1980\nyes\n"

    result = runner.invoke(
        app, ["agent", "chat", str(BANK), "--audit-json", str(audit)], input=script
    )

    assert result.exit_code == 0, result.output
    assert "[confirm_block → card_replaced]" in result.output
    entries = json.loads(audit.read_text())
    assert [e["state_after"] for e in entries][-1] == "card_replaced"
    assert entries[1]["intent"] == "lost_card"


def test_schema_is_json_schema() -> None:
    result = runner.invoke(app, ["agent", "schema"])

    schema = json.loads(result.output)
    assert schema["title"] == "AgentSpec"
    assert "states" in schema["properties"]
