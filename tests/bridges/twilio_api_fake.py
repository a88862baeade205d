"""A loopback stand-in for Twilio's REST API (Calls and Messages), and a uvicorn helper.

It answers as Twilio documents it (https://www.twilio.com/docs/voice/api/call-resource): HTTP
Basic `AccountSid:AuthToken`; form-encoded `POST /2010-04-01/Accounts/{AccountSid}/Calls.json`
creates a call (`To`, `From`, one of `Url`/`Twiml`/`ApplicationSid`) and answers 201 with the
call resource as JSON; `POST …/Calls/{CallSid}.json` updates a live call (`Status=completed`
ends it, `Twiml` replaces its TwiML); a call that does not exist or has ended answers 404 with
error code 20404 (CATALOG §1.8). `POST …/Messages.json` (`To`, `From`, `Body`) answers 201 with
the message resource (https://www.twilio.com/docs/messaging/api/message-resource). Every request
is recorded with its exact form fields.

twilio-python is pointed at it through its documented hook for custom transports, a custom
HTTP client (`Client(..., http_client=...)`): `LoopbackHttpClient` is the SDK's own
`AsyncTwilioHttpClient` with only the scheme and host of each URL changed.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.response import Response

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test_auth_token_00000000000000000"
TWILIO_API_HOST = "api.twilio.com"


@dataclass(frozen=True)
class ApiRequest:
    """One request as the fake received it."""

    method: str
    path: str
    form: list[tuple[str, str]]
    """Form fields in order, repeated names kept."""
    auth: tuple[str, str] | None

    def fields(self) -> dict[str, list[str]]:
        merged: dict[str, list[str]] = {}
        for name, value in self.form:
            merged.setdefault(name, []).append(value)
        return merged


@dataclass
class FakeTwilioApi:
    account_sid: str = ACCOUNT_SID
    auth_token: str = AUTH_TOKEN
    requests: list[ApiRequest] = field(default_factory=list)
    calls: dict[str, dict[str, Any]] = field(default_factory=dict)
    _next: int = 0
    _received: asyncio.Condition = field(default_factory=asyncio.Condition)

    def __post_init__(self) -> None:
        calls = f"/2010-04-01/Accounts/{self.account_sid}/Calls"
        self.app = Starlette(
            routes=[
                Route(f"{calls}.json", self._create, methods=["POST"]),
                Route(calls + "/{sid}.json", self._update, methods=["POST"]),
                Route(
                    f"/2010-04-01/Accounts/{self.account_sid}/Messages.json",
                    self._message,
                    methods=["POST"],
                ),
            ]
        )

    async def wait_for_requests(self, count: int, within_s: float = 3.0) -> list[ApiRequest]:
        async with asyncio.timeout(within_s), self._received:
            await self._received.wait_for(lambda: len(self.requests) >= count)
        return self.requests

    def add_live_call(self, sid: str) -> None:
        self.calls[sid] = self._resource(sid, "+15550100", "+15550199", "in-progress")

    def end_call(self, sid: str) -> None:
        self.calls[sid]["status"] = "completed"

    async def _record(self, request: Request) -> ApiRequest | JSONResponse:
        body = (await request.body()).decode()
        recorded = ApiRequest(
            request.method, request.url.path, parse_qsl(body, True), _basic_auth(request)
        )
        self.requests.append(recorded)
        async with self._received:
            self._received.notify_all()
        if recorded.auth != (self.account_sid, self.auth_token):
            return _error(401, 20003, "Authenticate")
        return recorded

    async def _create(self, request: Request) -> JSONResponse:
        recorded = await self._record(request)
        if isinstance(recorded, JSONResponse):
            return recorded
        fields = recorded.fields()
        if "To" not in fields:
            return _error(400, 21201, "No 'To' number is specified")
        if "From" not in fields:
            return _error(400, 21213, "No 'From' number is specified")
        if not {"Url", "Twiml", "ApplicationSid"} & set(fields):
            return _error(400, 21205, "Url parameter is required.")
        self._next += 1
        sid = f"CA{self._next:032x}"
        self.calls[sid] = self._resource(sid, fields["To"][0], fields["From"][0], "queued")
        return JSONResponse(self.calls[sid], status_code=201)

    async def _update(self, request: Request) -> JSONResponse:
        recorded = await self._record(request)
        if isinstance(recorded, JSONResponse):
            return recorded
        sid = request.path_params["sid"]
        call = self.calls.get(sid)
        if call is None or call["status"] == "completed":
            return _error(404, 20404, f"The requested resource {request.url.path} was not found")
        fields = recorded.fields()
        if fields.get("Status") == ["completed"]:
            call["status"] = "completed"
        return JSONResponse(call)

    async def _message(self, request: Request) -> JSONResponse:
        recorded = await self._record(request)
        if isinstance(recorded, JSONResponse):
            return recorded
        fields = recorded.fields()
        if "To" not in fields or "From" not in fields or "Body" not in fields:
            return _error(400, 21602, "Message body, To and From are required")
        self._next += 1
        sid = f"SM{self._next:032x}"
        message = {"sid": sid, "account_sid": self.account_sid, "status": "queued"}
        return JSONResponse(
            {
                **message,
                "to": fields["To"][0],
                "from": fields["From"][0],
                "body": fields["Body"][0],
            },
            status_code=201,
        )

    def _resource(self, sid: str, to: str, from_: str, status: str) -> dict[str, Any]:
        return {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": to,
            "from": from_,
            "status": status,
            "direction": "outbound-api",
            "uri": f"/2010-04-01/Accounts/{self.account_sid}/Calls/{sid}.json",
        }


def _basic_auth(request: Request) -> tuple[str, str] | None:
    scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    user, _, password = base64.b64decode(encoded).decode().partition(":")
    return user, password


def _error(status: int, code: int, message: str) -> JSONResponse:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return JSONResponse(body, status_code=status)


class LoopbackHttpClient(AsyncTwilioHttpClient):
    """The SDK's async HTTP client, sending what it meant for api.twilio.com to `base_url`."""

    def __init__(self, base_url: str) -> None:
        super().__init__(pool_connections=False)
        self._base = urlsplit(base_url)

    async def request(self, method: str, url: str, **kwargs: Any) -> Response:
        parts = urlsplit(url)
        assert parts.netloc == TWILIO_API_HOST, url
        local = urlunsplit(parts._replace(scheme=self._base.scheme, netloc=self._base.netloc))
        return await super().request(method, local, **kwargs)


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port; yields its `http://host:port`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()
