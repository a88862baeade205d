"""Who may use each endpoint: authenticated where a credential is set, refused by default in
production where none is.

Every route that reaches calls, conversations or call data belongs to one `Endpoint`, named as in
`bridges.allow_unauthenticated`. An endpoint is:

- *authenticated* when its credential is set: its bridge checks it on every request (Twilio's
  signature, a provider's bearer token, the REST API's `X-API-Key`);
- *open* when no credential is set, in development or when `bridges.allow_unauthenticated` lists
  it: anyone may use it (a warning at start-up says so);
- *refused* otherwise, that is in production without its credential: `AccessGate` answers every
  request with HTTP 403 before a route sees it (a WebSocket upgrade is denied the same way, so
  no frame is read), and logs which setting to set.

The probes (`/health`, `/ready`, `/metrics`), the API's description (`/docs`, `/openapi.json`)
and the static pages (`/`, `/dashboard`, `/static`, which hold no data) are public.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Protocol

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from opusagent.bridges import acs, audiocodes, telnyx, vonage
from opusagent.bridges.browser import BROWSER_PATH
from opusagent.bridges.chat import CHAT_PATH
from opusagent.bridges.twilio_calls import CALLS_PATH, STATUS_PATH
from opusagent.bridges.twilio_media import MEDIA_PATH, VOICE_PATH
from opusagent.bridges.twilio_relay import RELAY_PATH
from opusagent.bridges.twilio_sms import SMS_PATH
from opusagent.config import ENV_NESTED_DELIMITER, ENV_PREFIX, EndpointName, Settings
from opusagent.web.api import AGENTS_PATH, LIVE_CALLS_PATH

log = logging.getLogger(__name__)


class ErrorResponder(Protocol):
    """Builds a response in the app's error shape (`app.error_response`)."""

    def __call__(
        self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None
    ) -> Response: ...


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A group of routes and the setting holding the credential that protects them."""

    name: EndpointName
    roots: tuple[str, ...]
    """The paths served, each with every path under it."""
    credential: str | None
    """The `bridges` setting the caller must prove it knows; None: there is no such setting."""
    rest: bool = False
    """HTTP requests made by people and programs (rate-limited), not by a provider."""

    def serves(self, path: str) -> bool:
        return any(path == root or path.startswith(root + "/") for root in self.roots)


def _setting(credential: str) -> str:
    """A credential's setting and its environment variable, for a log line."""
    variable = f"{ENV_PREFIX}BRIDGES{ENV_NESTED_DELIMITER}{credential.upper()}"
    return f"bridges.{credential} ({variable})"


ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "twilio",
        (MEDIA_PATH, VOICE_PATH, STATUS_PATH, RELAY_PATH, SMS_PATH),
        "twilio_auth_token",
    ),
    Endpoint("audiocodes", (audiocodes.PATH,), "audiocodes_token"),
    Endpoint("acs", (acs.PATH,), "acs_token"),
    Endpoint("telnyx", (telnyx.PATH,), "telnyx_token"),
    Endpoint("vonage", (vonage.PATH,), "vonage_token"),
    Endpoint("browser", (BROWSER_PATH, AGENTS_PATH), None, rest=True),
    Endpoint("chat", (CHAT_PATH,), None),
    Endpoint("api", (CALLS_PATH, LIVE_CALLS_PATH), "api_key", rest=True),
)
PUBLIC_PATHS = ("/health", "/ready", "/metrics", "/docs", "/redoc", "/openapi.json", "/static")
"""Routes open to anyone in every environment (with what lies under them)."""
PUBLIC_PAGES = ("/", "/dashboard")
"""Pages that are plain files: what they show comes from endpoints above."""


def endpoint_of(path: str) -> Endpoint | None:
    """The endpoint serving `path`, if any."""
    return next((endpoint for endpoint in ENDPOINTS if endpoint.serves(path)), None)


def endpoint_name(path: str) -> str:
    """The name of the endpoint serving `path`, or "other"."""
    endpoint = endpoint_of(path)
    return endpoint.name if endpoint is not None else "other"


class Access(enum.Enum):
    AUTHENTICATED = "authenticated"
    OPEN = "open"
    REFUSED = "refused"


def access_of(settings: Settings) -> dict[Endpoint, Access]:
    """How each endpoint is served with `settings`."""
    bridges = settings.bridges
    allowed = set(bridges.allow_unauthenticated)
    access: dict[Endpoint, Access] = {}
    for endpoint in ENDPOINTS:
        if endpoint.credential is not None and getattr(bridges, endpoint.credential):
            access[endpoint] = Access.AUTHENTICATED
        elif settings.environment == "development" or endpoint.name in allowed:
            access[endpoint] = Access.OPEN
        else:
            access[endpoint] = Access.REFUSED
    return access


def log_access(settings: Settings) -> None:
    """One warning per open endpoint and one error per refused one (at start-up)."""
    for endpoint, access in access_of(settings).items():
        paths = ", ".join(endpoint.roots)
        if access is Access.OPEN:
            why = (
                "listed in bridges.allow_unauthenticated"
                if endpoint.name in settings.bridges.allow_unauthenticated
                else "development mode"
            )
            hint = (
                f"; set {_setting(endpoint.credential)} to require it"
                if endpoint.credential
                else ""
            )
            log.warning(
                "%s (%s) is open to anyone without a credential (%s)%s",
                endpoint.name,
                paths,
                why,
                hint,
            )
        elif access is Access.REFUSED:
            log.error("%s (%s) refuses every request: %s", endpoint.name, paths, _remedy(endpoint))


def _remedy(endpoint: Endpoint) -> str:
    allow = f"list {endpoint.name} in bridges.allow_unauthenticated to serve it unauthenticated"
    if endpoint.credential is None:
        return f"it has no credential in production; {allow}"
    return f"production needs {_setting(endpoint.credential)} to be set, or {allow}"


class AccessGate:
    """ASGI middleware refusing (HTTP 403) every request to the `refused` endpoints."""

    def __init__(self, app: ASGIApp, refused: Sequence[Endpoint], respond: ErrorResponder) -> None:
        self.app = app
        self._refused = tuple(refused)
        self._respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        endpoint = next((e for e in self._refused if e.serves(path)), None)
        if endpoint is None:
            await self.app(scope, receive, send)
            return
        remedy = _remedy(endpoint)
        log.warning("refused a request to %s: %s", path, remedy)
        response = self._respond(
            HTTPStatus.FORBIDDEN,
            "unauthenticated_endpoint",
            f"{endpoint.name} is refused: {remedy}.",
        )
        if scope["type"] == "websocket":
            await WebSocket(scope, receive, send).send_denial_response(response)
        else:
            await response(scope, receive, send)


def refused_endpoints(settings: Settings) -> list[Endpoint]:
    return [e for e, access in access_of(settings).items() if access is Access.REFUSED]
