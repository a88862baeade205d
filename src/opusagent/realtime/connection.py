"""One WebSocket to a Realtime endpoint, for one call (never pooled or shared, DESIGN rule 7).

`wss://…/realtime?model=<model>` with `Authorization: Bearer <key>` (CATALOG §6.1); every frame
is JSON text. The GA interface does not need the beta header `OpenAI-Beta: realtime=v1`, so it
is not sent.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from opusagent.realtime.events import (
    ClientEventBase,
    RealtimeProtocolError,
    ServerEvent,
    dump,
    parse_server_event,
)

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0


class RealtimeConnectError(ConnectionError):
    """The Realtime endpoint could not be reached or refused the connection."""


@dataclass(frozen=True, slots=True)
class RealtimeEndpoint:
    """Where the model is and how to authenticate."""

    url: str
    """The realtime URL without the model, e.g. `wss://api.openai.com/v1/realtime`."""
    model: str
    api_key: str | None = None

    def address(self) -> str:
        """`url` with `model=<model>` in its query."""
        parts = urlsplit(self.url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "model"]
        return urlunsplit(parts._replace(query=urlencode([*query, ("model", self.model)])))

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class RealtimeConnection:
    """A connected Realtime session: send client events, read server events."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    @classmethod
    async def open(cls, endpoint: RealtimeEndpoint, *, within: float = 10.0) -> RealtimeConnection:
        """Connect; `within` bounds the opening handshake (seconds)."""
        url = endpoint.address()
        try:
            ws = await connect(
                url,
                additional_headers=endpoint.headers(),
                open_timeout=within,
                close_timeout=CLOSE_TIMEOUT_S,
                max_size=None,
                compression=None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            why = f"{endpoint.url} refused the session: HTTP {status}"
            raise RealtimeConnectError(why) from exc
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise RealtimeConnectError(f"cannot reach {endpoint.url}: {exc}") from exc
        return cls(ws)

    @property
    def closed_because(self) -> str:
        """The close code and reason, once closed."""
        code, reason = self._ws.close_code, self._ws.close_reason
        return f"{code}{f' {reason}' if reason else ''}"

    async def send(self, event: ClientEventBase) -> None:
        """Send one client event; a closed socket is noticed by `events()`, not here."""
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(dump(event))

    async def events(self) -> AsyncIterator[ServerEvent]:
        """Server events in order until the socket closes; a malformed one is logged and skipped."""
        with contextlib.suppress(ConnectionClosed):
            async for frame in self._ws:
                try:
                    yield parse_server_event(frame)
                except RealtimeProtocolError as exc:
                    log.warning("realtime: ignoring a malformed server event: %s", exc)

    async def close(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.close()
