"""A shared secret presented on a provider's WebSocket upgrade.

Bridges whose provider (or a gateway in front of it) proves itself with a static token check it
here, before the socket is accepted: a refusal closes the handshake with code 1008, which the
ASGI server answers as HTTP 403, so no frame of the call is ever read.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping

from starlette.websockets import WebSocket

from opusagent.bridges.session import POLICY_VIOLATION

log = logging.getLogger(__name__)

AUTHORIZATION = "authorization"
BEARER = "bearer"
"""The scheme of `Authorization: Bearer <token>` (RFC 6750 §2.1; schemes are case-insensitive,
RFC 9110 §11.1)."""


def presented_tokens(headers: Mapping[str, str], token_header: str | None = None) -> list[str]:
    """The tokens a request presents: the `Authorization: Bearer` credentials, and the raw value
    of `token_header` when the provider sends its token in a header of its own."""
    tokens: list[str] = []
    scheme, _, credentials = headers.get(AUTHORIZATION, "").strip().partition(" ")
    if scheme.lower() == BEARER and credentials.strip():
        tokens.append(credentials.strip())
    if token_header is not None and (raw := headers.get(token_header, "").strip()):
        tokens.append(raw)
    return tokens


def token_matches(
    headers: Mapping[str, str], expected: str, token_header: str | None = None
) -> bool:
    """True when one of the presented tokens is `expected` (compared in constant time)."""
    wanted = expected.encode()
    return any(
        hmac.compare_digest(token.encode(), wanted)
        for token in presented_tokens(headers, token_header)
    )


async def admit(
    websocket: WebSocket, token: str | None, *, provider: str, token_header: str | None = None
) -> bool:
    """Accept `websocket` when `token` is unset or presented; otherwise refuse it before accept
    (HTTP 403) and return False."""
    if token is not None and not token_matches(websocket.headers, token, token_header):
        log.warning("refusing a %s stream without a valid token", provider)
        await websocket.close(code=POLICY_VIOLATION)
        return False
    await websocket.accept()
    return True
