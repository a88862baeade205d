"""Fixtures for controller tests."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from opusagent.agent.fsa.loader import LoadedAgent, load_agent

LoadText = Callable[[str], LoadedAgent]


@pytest.fixture
def load_text(tmp_path: Path) -> LoadText:
    """Load an agent from YAML text (dedented), written to a file in `tmp_path`."""

    def load(text: str, name: str = "agent.yaml") -> LoadedAgent:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return load_agent(path)

    return load
