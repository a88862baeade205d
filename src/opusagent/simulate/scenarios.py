"""Scenarios: what a simulated caller wants, knows and does, and how its call is judged.

A scenario file (YAML) holds:

- `goal`, `facts` (what the caller knows: a card number, a date of birth…) and `wrong_facts`
  (what a caller who `wrong_info_first` says before the right fact);
- `caller`: how the caller answers what it hears. Either `script`, rules each with `when` (a
  regular expression searched in what the caller heard, lower case, no punctuation) and one
  action: `say` (a template over `facts`, with an optional `short` form for terse personas),
  `keys` (DTMF), `silent` or `hang_up`; or `agent`, a caller that is itself a Finite State
  Agent (an agent file whose input is what the callee says and whose replies are the caller's
  words; `facts` are its call context); or `llm`, a caller voiced by the configured chat
  LLM (persona, goal and facts in its prompt), which may also have a `script` or an `agent` to
  fall back on when no LLM is configured.
- `success` (states the callee must reach, the state it must end in, slots it must hold, tools
  it must call, at most so many turns or seconds) and `failure` (states it must never reach,
  tools it must never call, phrases it must never say);
- `judge`: an optional `rubric` for an LLM judge (one verdict per line, when an LLM is
  configured), judged after the rule criteria;
- `modes` it is meant for (`text`, `audio`), `params` handed to the call, `persona` (a file,
  relative to the scenario) and `agent` (the name of the agent it is written for).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from opusagent.agent.fsa.loader import AgentFileError, load_agent
from opusagent.simulate.files import SimulationFileError, load_yaml_model

Mode = Literal["text", "audio"]
MODES: tuple[Mode, ...] = ("text", "audio")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(_Model):
    """One scripted reaction: when the caller hears `when`, it does one thing."""

    when: str | None = Field(
        None, description="Regular expression searched in what was heard; unset: by order only."
    )
    say: str | None = None
    short: str | None = Field(None, description="What a terse caller says instead of `say`.")
    keys: str | None = None
    silent: bool = False
    hang_up: bool = False

    @field_validator("when")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _one_action(self) -> Rule:
        actions = [self.say is not None, self.keys is not None, self.silent, self.hang_up]
        if sum(actions) != 1:
            raise ValueError("a rule does exactly one of: say, keys, silent, hang_up")
        if self.short is not None and self.say is None:
            raise ValueError("short is the terse form of say; this rule says nothing")
        return self


class LLMCallerSpec(_Model):
    """A caller voiced by the configured chat LLM (`simulate.llm_caller`)."""

    model: str = Field(
        "default", min_length=1, description="A model name as in agent files (default: llm_model)."
    )
    instructions: str = Field("", description="Added to the caller's prompt.")
    temperature: float = Field(0.0, ge=0.0, le=2.0)


class CallerSpec(_Model):
    script: list[Rule] | None = None
    otherwise: Literal["next", "repeat", "silent", "hang_up"] = Field(
        "next",
        description="When no rule's `when` matches: answer with the first rule not used yet "
        "(next), say the last thing again, stay silent, or hang up.",
    )
    agent: Path | None = Field(None, description="A caller Finite State Agent file.")
    llm: LLMCallerSpec | None = Field(
        None,
        description="A caller voiced by the configured LLM; a script or agent given too is "
        "used when no LLM is configured.",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> CallerSpec:
        if self.script is not None and self.agent is not None:
            raise ValueError("a caller has either a script or an agent (a caller FSA file)")
        if self.script is None and self.agent is None and self.llm is None:
            raise ValueError("a caller has a script, an agent (a caller FSA file) or an llm")
        return self


class Success(_Model):
    states: list[str] = Field(default_factory=list)
    final_state: str | None = None
    slots: dict[str, Any] = Field(default_factory=dict)
    tools: list[str] = Field(default_factory=list)
    max_turns: int | None = Field(None, ge=1)
    max_duration_s: float | None = Field(None, gt=0)


class Failure(_Model):
    states: list[str] = Field(default_factory=list)
    tools: list[str] = Field(default_factory=list)
    phrases: list[str] = Field(default_factory=list)


class Judge(_Model):
    """An LLM judge's rubric: each line a criterion the transcript is judged against."""

    rubric: list[str] = Field(min_length=1)
    model: str = Field(
        "default", min_length=1, description="A model name as in agent files (default: llm_model)."
    )

    @field_validator("rubric")
    @classmethod
    def _lines(cls, rubric: list[str]) -> list[str]:
        if any(not line.strip() for line in rubric):
            raise ValueError("a rubric line is empty")
        return rubric


class Limits(_Model):
    """Where the runner stops a call that goes on (the call is then judged as it stands)."""

    max_caller_turns: int = Field(20, ge=1)
    max_duration_s: float = Field(240.0, gt=0)


class Scenario(_Model):
    name: str = Field(min_length=1)
    description: str = ""
    agent: str | None = None
    persona: Path | None = None
    modes: list[Mode] = Field(default_factory=lambda: list(MODES), min_length=1)
    goal: str = ""
    facts: dict[str, str] = Field(default_factory=dict)
    wrong_facts: dict[str, str] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    caller: CallerSpec
    success: Success = Success()
    failure: Failure = Failure()
    judge: Judge | None = None
    limits: Limits = Limits()

    @model_validator(mode="after")
    def _wrong_facts_are_facts(self) -> Scenario:
        unknown = sorted(set(self.wrong_facts) - set(self.facts))
        if unknown:
            raise ValueError(f"wrong_facts for facts not given: {', '.join(unknown)}")
        return self


class LoadedScenario(BaseModel):
    """A scenario with the file it came from (relative paths in it are relative to that)."""

    model_config = ConfigDict(frozen=True)

    scenario: Scenario
    path: Path

    @property
    def name(self) -> str:
        return self.scenario.name

    def relative(self, path: Path) -> Path:
        return path if path.is_absolute() else self.path.parent / path


def load_scenario(path: Path) -> LoadedScenario:
    """The scenario in a YAML file; `SimulationFileError` names the file and line of a problem."""
    scenario = load_yaml_model(path, Scenario, "scenario")
    loaded = LoadedScenario(scenario=scenario, path=path)
    for name, referenced in (
        ("persona", scenario.persona),
        ("caller.agent", scenario.caller.agent),
    ):
        if referenced is not None and not loaded.relative(referenced).is_file():
            raise SimulationFileError(f"{path}: {name}: no such file {loaded.relative(referenced)}")
    if scenario.caller.agent is not None:
        try:
            load_agent(loaded.relative(scenario.caller.agent))
        except AgentFileError as exc:
            raise SimulationFileError(f"{path}: caller.agent: {exc}") from None
    return loaded


def load_scenarios(path: Path) -> list[LoadedScenario]:
    """One scenario file, or every `*.yaml` scenario of a folder (a scenario pack), by name."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            raise SimulationFileError(f"{path}: no scenario files (*.yaml) in this folder")
        return [load_scenario(file) for file in files]
    if not path.is_file():
        raise SimulationFileError(f"{path}: no such scenario file or folder")
    return [load_scenario(path)]
