"""Shared test set-up."""

import os

import pytest


@pytest.fixture(autouse=True)
def _no_opusagent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see only the OPUSAGENT_* variables they set, not the developer's shell."""
    for name in list(os.environ):
        if name.startswith("OPUSAGENT_"):
            monkeypatch.delenv(name)
