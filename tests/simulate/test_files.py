"""Persona and scenario files: the schema, and errors that name the file and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from opusagent.simulate.files import SimulationFileError
from opusagent.simulate.personas import load_persona
from opusagent.simulate.scenarios import load_scenario, load_scenarios

from .helpers import PACKS, ROOT, SCENARIOS


def test_every_example_persona_loads() -> None:
    names = {load_persona(path).name for path in (ROOT / "examples" / "personas").glob("*.yaml")}

    assert {"calm", "interrupter", "backchanneler", "keypad", "silent", "forgetful"} <= names


@pytest.mark.parametrize("pack", PACKS)
def test_every_example_scenario_pack_loads(pack: str) -> None:
    scenarios = load_scenarios(SCENARIOS / pack)

    assert len(scenarios) >= 4
    assert all(s.scenario.agent for s in scenarios)


def test_a_bad_field_is_named_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\ncaller:\n  script:\n    - {when: hello, say: hi}\nsuccess:\n  max_turns: 0\n"
    )

    with pytest.raises(SimulationFileError) as caught:
        load_scenario(path)

    assert f"{path}:6: success.max_turns: Input should be greater than or equal to 1" in str(
        caught.value
    )


def test_a_rule_with_two_actions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.yaml"
    path.write_text("name: two\ncaller:\n  script:\n    - {say: hi, keys: '1'}\n")

    with pytest.raises(SimulationFileError, match=r"two.yaml:4: caller.script\[0\]: a rule does"):
        load_scenario(path)


def test_a_bad_pattern_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "pattern.yaml"
    path.write_text("name: p\ncaller:\n  script:\n    - {when: 'card(', say: hi}\n")

    with pytest.raises(SimulationFileError, match="not a regular expression"):
        load_scenario(path)


def test_a_missing_persona_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "lonely.yaml"
    path.write_text("name: lonely\npersona: nobody.yaml\ncaller:\n  script: [{say: hi}]\n")

    with pytest.raises(SimulationFileError, match="persona: no such file"):
        load_scenario(path)


def test_wrong_facts_must_be_facts(tmp_path: Path) -> None:
    path = tmp_path / "wrong.yaml"
    path.write_text("name: w\nwrong_facts: {pin: '0000'}\ncaller:\n  script: [{say: hi}]\n")

    with pytest.raises(SimulationFileError, match="wrong_facts for facts not given: pin"):
        load_scenario(path)


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\ncaller: [\n")

    with pytest.raises(SimulationFileError, match=r"broken.yaml:3: not valid YAML"):
        load_scenario(path)


def test_a_broken_caller_fsa_is_named(tmp_path: Path) -> None:
    (tmp_path / "caller.yaml").write_text("name: c\ninitial: nowhere\nstates: {}\n")
    path = tmp_path / "fsa.yaml"
    path.write_text("name: f\ncaller: {agent: caller.yaml}\n")

    with pytest.raises(SimulationFileError, match=r"fsa.yaml: caller.agent: .*caller.yaml"):
        load_scenario(path)
