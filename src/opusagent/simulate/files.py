"""Reading persona and scenario files: YAML checked against a schema, every problem named with
its file and line (`lost_card.yaml:12: success.states: ...`), as agent files are."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from opusagent.agent.fsa.loader import SourceMap, dotted

M = TypeVar("M", bound=BaseModel)


class SimulationFileError(ValueError):
    """A persona or scenario file that cannot be used; the message names the file and line."""


def load_yaml_model(path: Path, model: type[M], kind: str) -> M:
    """The `model` written in the YAML file `path` (a `kind` file, named in errors)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SimulationFileError(
            f"{path}: cannot read the {kind} file: {exc.strerror or exc}"
        ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = ""
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            line = f":{exc.problem_mark.line + 1}"
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        raise SimulationFileError(f"{path}{line}: not valid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise SimulationFileError(f"{path}: a {kind} file is a mapping of its fields")
    source = SourceMap(path, root)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{source.where(err['loc'])}: {dotted(err['loc']) or kind}: "
            f"{str(err['msg']).removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise SimulationFileError("\n".join(problems)) from None
