"""Fixtures for the LLM tests: the loopback llama.cpp server, scripted servers, clients."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from opusagent.agent.llm.endpoint import LLM, llm_from_settings
from opusagent.config import Settings

from ..fsa.conftest import load_text
from .llama_server import MODEL, LlamaServerMissing, llama_server

__all__ = ["load_text"]


@pytest.fixture(scope="session")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the real llama.cpp server on loopback (started once per session).

    A missing `.venv-llm` fails the tests (never skips them): CI must run them."""
    log = tmp_path_factory.mktemp("llama") / "server.log"
    try:
        with llama_server(log) as url:
            yield url
    except LlamaServerMissing as exc:
        pytest.fail(str(exc))


def llama_settings(url: str, **extra: object) -> Settings:
    return Settings(llm_base_url=url, llm_model=MODEL, **extra)  # type: ignore[arg-type]


@pytest.fixture
async def llama_llm(llama_url: str) -> AsyncIterator[LLM]:
    llm = llm_from_settings(llama_settings(llama_url))
    assert llm is not None
    try:
        yield llm
    finally:
        await llm.aclose()
