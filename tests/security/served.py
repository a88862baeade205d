"""The real app and agents on loopback for the security tests, with instant fake speech stages,
and the provider's side of a call driven frame by frame (faster than real time when asked)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from bridges.loopback import serving
from bridges.test_served_app import served_app
from opusagent.bridges.farend import FarEnd
from opusagent.testing import Utterance

SILENCE_20MS_MULAW = b"\xff" * 160


@contextlib.asynccontextmanager
async def served(
    utterances: list[Utterance] | None = None, **settings: Any
) -> AsyncIterator[tuple[FastAPI, str, httpx.AsyncClient]]:
    """The served app (`settings`: `Settings` fields); yields (app, ws base URL, HTTP client)."""
    app = served_app(utterances or [], **settings)
    async with serving(app) as url, httpx.AsyncClient(base_url=http_url(url)) as http:
        yield app, url, http


def http_url(ws_url: str) -> str:
    return "http" + ws_url.removeprefix("ws")


@contextlib.asynccontextmanager
async def stream(far_end: FarEnd, url: str) -> AsyncIterator[ClientConnection]:
    """A provider's socket to `url` that has sent `far_end`'s opening frames."""
    async with connect(url, additional_headers=dict(far_end.headers())) as ws:
        for frame in far_end.opening():
            await ws.send(frame)
        yield ws


async def closed_code(ws: ClientConnection) -> int | None:
    """Wait until the server closes `ws` (what it sends meanwhile is dropped); its close code."""
    await ws.wait_closed()
    return ws.close_code
