"""Loading an agent file: YAML with line numbers, the schema, its tools module and knowledge base.

Every problem names the file and the line (`bank.yaml:42: states.verify.collect: unknown slot
'pin'`), so a mistake in an agent file is found where it is written.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.knowledge import KnowledgeBase, KnowledgeError
from opusagent.agent.tools.builtin import builtin_tools
from opusagent.agent.tools.registry import ToolRegistry, tools_of_module

PathPart = str | int


class AgentFileError(ValueError):
    """An agent file that cannot be loaded; the message names the file, line and problem."""


@dataclass(frozen=True)
class SourceMap:
    """Where each part of a YAML document is written."""

    file: Path
    root: yaml.Node | None

    def line_of(self, path: Sequence[PathPart]) -> int | None:
        """1-based line of the deepest part of `path` in the document (a key's own line)."""
        node = self.root
        line = node.start_mark.line + 1 if node is not None else None
        for part in path:
            found = _child(node, part) if node is not None else None
            if found is None:
                break
            mark, node = found
            line = mark.line + 1
        return line

    def where(self, path: Sequence[PathPart]) -> str:
        line = self.line_of(path)
        return f"{self.file}:{line}" if line is not None else str(self.file)


def _child(node: yaml.Node, part: PathPart) -> tuple[yaml.Mark, yaml.Node] | None:
    """The child at `part` and where it is written (for a mapping entry: its key)."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key.start_mark, value
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        item: yaml.Node = node.value[part]
        return item.start_mark, item
    return None


def dotted(path: Sequence[PathPart]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


@dataclass
class LoadedAgent:
    """An agent file, checked against the schema, with what it needs to run."""

    spec: AgentSpec
    path: Path
    source: SourceMap
    tools: ToolRegistry
    knowledge: KnowledgeBase | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def load_agent(path: Path) -> LoadedAgent:
    """Read, validate and prepare the agent in `path`; `AgentFileError` says what is wrong."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentFileError(f"{path}: cannot read the agent file: {exc.strerror or exc}") from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        line = ""
        if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
            line = f":{exc.problem_mark.line + 1}"
        problem = exc.problem if isinstance(exc, yaml.MarkedYAMLError) else str(exc)
        raise AgentFileError(f"{path}{line}: not valid YAML: {problem}") from None
    source = SourceMap(path, root)
    if not isinstance(raw, dict):
        raise AgentFileError(f"{path}: an agent file is a mapping (name, initial, states, ...)")
    try:
        spec = AgentSpec.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{source.where(err['loc'])}: {dotted(err['loc']) or 'agent'}: {_message(err)}"
            for err in exc.errors()
        ]
        raise AgentFileError("\n".join(problems)) from None
    tools = builtin_tools()
    if spec.tools_module:
        tools = tools.merged(_load_tools(path.parent / spec.tools_module, source))
    knowledge = None
    if spec.knowledge:
        try:
            knowledge = KnowledgeBase.load(path.parent / spec.knowledge)
        except KnowledgeError as exc:
            raise AgentFileError(f"{source.where(['knowledge'])}: {exc}") from None
    return LoadedAgent(spec, path, source, tools, knowledge, raw)


def _message(error: Any) -> str:
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _load_tools(module_path: Path, source: SourceMap) -> ToolRegistry:
    where = source.where(["tools_module"])
    if not module_path.is_file():
        raise AgentFileError(f"{where}: tools module {module_path} does not exist")
    name = f"opusagent_agent_tools_{abs(hash(module_path.resolve()))}"
    spec = importlib.util.spec_from_file_location(name, module_path)
    if spec is None or spec.loader is None:
        raise AgentFileError(f"{where}: cannot import {module_path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise AgentFileError(f"{where}: importing {module_path} failed: {exc!r}") from None
    try:
        return tools_of_module(vars(module))
    except (ValueError, TypeError) as exc:
        raise AgentFileError(f"{where}: a tool in {module_path} is invalid: {exc}") from None
