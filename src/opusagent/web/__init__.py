"""The browser softphone and the live dashboard (`docs/web.md`)."""

from __future__ import annotations

from fastapi import FastAPI

from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.sessions.live import LiveCalls
from opusagent.web.api import mount_web_api
from opusagent.web.pages import mount_pages

__all__ = ["mount_web"]


def mount_web(app: FastAPI, agents: AgentCatalog, live: LiveCalls, *, api_key: str | None) -> None:
    """Serve the softphone (`/`), the dashboard (`/dashboard`) and the JSON they read."""
    mount_web_api(app, agents, live, api_key=api_key)
    mount_pages(app)
