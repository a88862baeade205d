"""Graceful drain: on SIGTERM the server stops taking calls, lets live ones finish, then exits.

1. `/ready` fails at once, so the load balancer (or Kubernetes) stops sending new calls here.
2. What would still start a call here is refused with HTTP 503 and `Retry-After` (`DrainGate`):
   WebSocket handshakes (every streaming provider and the browser treat a refused handshake as
   a failed connection; nginx and the ingress retry it on another instance) and the Twilio
   voice webhooks (Twilio then asks the number's fallback URL). A stream whose socket opened
   before the drain but starts its call after is refused by the bridge (`CallRefusedError`).
3. Live calls go on until they end or `drain_timeout_s` passes. Then the server exits: uvicorn
   closes the sockets still open with 1012 (service restart), which each call takes as a lost
   connection, so its session stays in the store and resumes when the provider reconnects to
   another instance (`sessions/`).

A second SIGTERM, or SIGINT (Ctrl+C), skips the wait.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Protocol

import uvicorn
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from opusagent.bridges.twilio_media import VOICE_PATH
from opusagent.bridges.twilio_relay import RELAY_VOICE_PATH
from opusagent.readiness import Readiness

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
"""Seconds a refused provider or client is told to wait before it tries again."""
REFUSAL_MESSAGE = "This server is stopping and takes no new calls; try another instance."
CALL_WEBHOOKS = frozenset({VOICE_PATH, RELAY_VOICE_PATH})
"""HTTP requests that start a call here (the rest, e.g. status callbacks, are still served)."""


class DrainGate:
    """ASGI middleware: while the server drains, new calls get `refusal` (an HTTP 503)."""

    def __init__(self, app: ASGIApp, readiness: Readiness, refusal: Response) -> None:
        self.app = app
        self._readiness = readiness
        self._refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._readiness.draining or not _starts_a_call(scope):
            await self.app(scope, receive, send)
            return
        log.info("draining: refused a new call at %s", scope["path"])
        response = self._refusal
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).send_denial_response(response)
        else:
            await response(scope, receive, send)


def _starts_a_call(scope: Scope) -> bool:
    if scope["type"] == "websocket":
        return True
    return scope["type"] == "http" and scope["path"] in CALL_WEBHOOKS


class Drainable(Protocol):
    """What a drain stops and waits for: the server's calls."""

    def stop_taking_calls(self) -> None: ...

    async def wait_idle(self, within: float) -> int:
        """Wait until no call is live, or `within` seconds; returns the calls still live."""
        ...


async def drain(readiness: Readiness, calls: Drainable | None, within: float) -> None:
    """Stop taking calls, then wait for the live ones to end (up to `within` seconds)."""
    readiness.begin_drain()
    if calls is None:
        return
    calls.stop_taking_calls()
    log.info("draining: no new calls; live calls have up to %g s to finish", within)
    left = await calls.wait_idle(within)
    if left:
        log.warning(
            "draining: %d call(s) still live after %g s: dropped resumable as the server stops",
            left,
            within,
        )
    else:
        log.info("draining: every call has ended")


class DrainingServer(uvicorn.Server):
    """A uvicorn server whose first SIGTERM drains (`drain`) before it shuts down."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig == signal.SIGTERM and self._draining is None and self._loop is not None:
            # A signal handler runs between two bytecodes of the loop's thread: hand over.
            self._loop.call_soon_threadsafe(self._begin_drain)
            return
        super().handle_exit(sig, frame)

    def _begin_drain(self) -> None:
        if self._draining is None:
            self._draining = asyncio.get_running_loop().create_task(self._drain_then_exit())

    async def _drain_then_exit(self) -> None:
        try:
            await self._drain()
        except Exception:
            log.exception("draining failed; stopping now")
        finally:
            self.should_exit = True
