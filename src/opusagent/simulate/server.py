"""The agent under test: served by this process on a free loopback port (real uvicorn, the real
app and bridges), or a server already running elsewhere (`--url`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import uvicorn
from fastapi import FastAPI

from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.agent.fsa.loader import load_agent
from opusagent.agent.nlu.embeddings import MiniLMEmbedder
from opusagent.app import create_app
from opusagent.config import Settings
from opusagent.simulate.record import CalleeRecord
from opusagent.simulate.scenarios import Mode

READY_TIMEOUT_S = 300.0
RECORD_TIMEOUT_S = 15.0
"""How long a finished call's record may take to be stored."""


class SimulationServerError(RuntimeError):
    """The agent under test could not be served or reached."""


class AgentServer:
    """Where the simulated calls go, and where their callee records come from."""

    def __init__(
        self,
        url: str,
        *,
        agent: str | None,
        app: FastAPI | None = None,
        api_key: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        secure = parts.scheme in ("https", "wss")
        self.ws_url = urlunsplit(parts._replace(scheme="wss" if secure else "ws")).rstrip("/")
        self.http_url = urlunsplit(parts._replace(scheme="https" if secure else "http")).rstrip("/")
        self.agent = agent
        """The agent calls name (None: the server's default)."""
        self._app = app
        self._api_key = api_key

    async def record(self, call_id: str, mode: Mode) -> CalleeRecord:
        """What the agent did on call `call_id`; `SimulationServerError` if it cannot be had."""
        if mode == "text":
            return await self._conversation(call_id)
        return await self._call_record(call_id)

    async def _conversation(self, call_id: str) -> CalleeRecord:
        if self._app is None:
            raise SimulationServerError("text mode reads the conversation in this process")
        stored = await self._app.state.sessions.load(call_id)
        if stored is None:
            raise SimulationServerError(f"conversation {call_id!r} is not in the session store")
        reason = "conversation ended" if stored.ended else "the caller left"
        return CalleeRecord.of_state(call_id, stored.state, end_reason=reason)

    async def _call_record(self, call_id: str) -> CalleeRecord:
        url = f"{self.http_url}/calls/{call_id}"
        headers = {"X-API-Key": self._api_key} if self._api_key else {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RECORD_TIMEOUT_S
        while True:
            status, body = await asyncio.to_thread(_get, url, headers)
            if status == 200:
                return CalleeRecord.of_call(json.loads(body))
            if status != 404 or loop.time() >= deadline:
                raise SimulationServerError(f"GET {url}: HTTP {status}: {body[:200]}")
            await asyncio.sleep(0.2)


def _get(url: str, headers: dict[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode(errors="replace")
    except OSError as exc:
        raise SimulationServerError(f"GET {url}: {exc}") from None


def served_settings(settings: Settings, agent_file: Path, out: Path) -> Settings:
    """`settings` narrowed to serving the one agent under test, records in `out`."""
    return settings.model_copy(
        update={
            "agents": [agent_file],
            "default_agent": load_agent(agent_file).spec.name,
            "database_url": f"sqlite+aiosqlite:///{(out / 'calls.db').resolve()}",
            "recordings_dir": out / "recordings",
        }
    )


@contextlib.asynccontextmanager
async def serve_agent(settings: Settings, mode: Mode) -> AsyncIterator[AgentServer]:
    """Serve `settings.agents` on a free loopback port until the block ends.

    Audio mode loads every start-up component (speech models, NLU, records); text mode only
    what a text conversation needs (the agent and its NLU).
    """
    catalog = AgentCatalog.load(settings.agents, default=settings.default_agent)
    loaders: dict[str, Any] | None = None
    if mode == "text":

        async def load_nlu() -> None:
            if settings.nlu_embeddings:
                embedder = await asyncio.to_thread(MiniLMEmbedder)
                await asyncio.to_thread(catalog.use_embedder, embedder)

        loaders = {"nlu": load_nlu}
    app = create_app(settings, loaders, agents=catalog)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise SimulationServerError(f"the server did not start: {task.exception()!r}")
            await asyncio.sleep(0.02)
        readiness = app.state.readiness
        async with asyncio.timeout(READY_TIMEOUT_S):
            await readiness.wait()
        if not readiness.ready:
            raise SimulationServerError(f"the server is not ready: {readiness.summary()}")
        port = sock.getsockname()[1]
        yield AgentServer(f"http://127.0.0.1:{port}", agent=catalog.default, app=app)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await task
        sock.close()
