"""What one connection, one client or the whole instance may ask of the server (`limits`).

- A WebSocket message larger than `max_message_bytes` closes its connection with 1009
  ("message too big", RFC 6455 §7.4.1) before any bridge reads it (`MessageSizeLimit`). The call
  takes it as a lost connection, so its session stays in the store and resumes on reconnect.
- Caller audio faster than `max_audio_rate` times real time, beyond `audio_burst_s` seconds of
  slack, is a flood: the connection is cut with 1008 (policy violation) (`MeteredCall`).
- Beyond `max_calls` calls in progress a new call is refused with the provider's busy answer:
  Twilio's Voice webhooks get `<Reject reason="busy"/>` (`BusyWebhooks`; Twilio then plays a
  busy signal, https://www.twilio.com/docs/voice/twiml/reject), and a stream whose call would
  start is closed with 1013 (try again later), the drain's refusal (`serving.CallMaker`).
- REST and dashboard requests are limited per API key, or per client address without a valid
  key, to `rest_requests_per_s` with bursts of `rest_burst`: more are answered 429 with
  `Retry-After` (`RestRateLimit`).

Each is logged and counted in `opusagent_limited_total{limit, endpoint}`.
"""

from __future__ import annotations

import hmac
import logging
import math
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Literal

from prometheus_client import CollectorRegistry, Counter
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from twilio.twiml.voice_response import VoiceResponse

from opusagent.bridges.session import POLICY_VIOLATION, BridgedCall, StreamRefusedError
from opusagent.call.events import CallerAudio, CallEvent
from opusagent.config import LimitSettings
from opusagent.drain import CALL_WEBHOOKS
from opusagent.security import ErrorResponder, endpoint_name, endpoint_of

log = logging.getLogger(__name__)

MESSAGE_TOO_BIG = 1009
"""WebSocket close code for a message too big to process (RFC 6455 §7.4.1)."""
API_KEY_HEADER = b"x-api-key"
MAX_CLIENTS = 10_000
"""Rate-limit buckets kept; the least recently used go first beyond this."""

Limit = Literal["message_size", "audio_flood", "busy", "rest_rate"]


class LimitCounts:
    """`opusagent_limited_total`: connections and requests a limit cut off or refused."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._counter = Counter(
            "opusagent_limited",
            "Connections and requests cut off or refused by a limit (message_size, "
            "audio_flood, busy, rest_rate), by endpoint.",
            ["limit", "endpoint"],
            registry=registry,
        )

    def hit(self, limit: Limit, endpoint: str) -> None:
        """Count one; `endpoint` is an endpoint's name (a bridge's is its endpoint's)."""
        self._counter.labels(limit, endpoint).inc()


class TokenBucket:
    """Up to `capacity` units at once, refilled at `rate` units per second."""

    __slots__ = ("_capacity", "_level", "_rate", "_updated")

    def __init__(self, rate: float, capacity: float, now: float) -> None:
        self._rate = rate
        self._capacity = capacity
        self._level = capacity
        self._updated = now

    def take(self, amount: float, now: float) -> float:
        """Take `amount` if there is that much: 0.0; otherwise the seconds until there is."""
        self._level = min(self._capacity, self._level + (now - self._updated) * self._rate)
        self._updated = now
        if self._level >= amount:
            self._level -= amount
            return 0.0
        return (amount - self._level) / self._rate


# --- audio floods ----------------------------------------------------------------------------


class AudioFloodError(StreamRefusedError):
    """A connection sends caller audio faster than real time allows."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code=POLICY_VIOLATION)


class MeteredCall:
    """A connection's call whose caller audio may come at most `max_audio_rate` times faster
    than real time (beyond `audio_burst_s` of slack); a flood raises `AudioFloodError`, which
    refuses the stream (the bridge closes it with 1008)."""

    def __init__(
        self,
        call: BridgedCall,
        limits: LimitSettings,
        on_flood: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._call = call
        self._on_flood = on_flood
        self._clock = clock
        self._rate = limits.max_audio_rate
        self._audio = TokenBucket(limits.max_audio_rate, limits.audio_burst_s, clock())

    @property
    def call_id(self) -> str:
        return self._call.call_id

    @property
    def end_reason(self) -> str | None:
        return self._call.end_reason

    async def start(self) -> None:
        await self._call.start()

    def handle(self, event: CallEvent) -> None:
        if type(event) is CallerAudio and self._audio.take(event.chunk.duration, self._clock()):
            self._on_flood()
            raise AudioFloodError(
                f"call {self._call.call_id}: caller audio faster than {self._rate:g}x real "
                "time (limits.max_audio_rate, beyond limits.audio_burst_s): a flood, cut off"
            )
        self._call.handle(event)

    async def wait_closed(self) -> str:
        return await self._call.wait_closed()


# --- ASGI middleware -------------------------------------------------------------------------


class MessageSizeLimit:
    """Closes (1009) a WebSocket whose next message is larger than `max_bytes`; the app then
    reads a disconnect, and what it sends after is dropped (the socket is gone)."""

    def __init__(self, app: ASGIApp, max_bytes: int, counts: LimitCounts) -> None:
        self.app = app
        self._max = max_bytes
        self._counts = counts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        closed = False
        path: str = scope["path"]

        async def limited_receive() -> Message:
            nonlocal closed
            message = await receive()
            if message["type"] != "websocket.receive":
                return message
            data = message.get("bytes")
            size = len(data) if data is not None else len(message.get("text") or "")
            if size <= self._max:
                return message
            log.warning(
                "%s: a message of %d bytes is over limits.max_message_bytes (%d): closing with %d",
                path,
                size,
                self._max,
                MESSAGE_TOO_BIG,
            )
            self._counts.hit("message_size", endpoint_name(path))
            closed = True
            await send({"type": "websocket.close", "code": MESSAGE_TOO_BIG, "reason": ""})
            return {"type": "websocket.disconnect", "code": MESSAGE_TOO_BIG}

        async def send_unless_closed(message: Message) -> None:
            if not closed:
                await send(message)

        await self.app(scope, limited_receive, send_unless_closed)


class BusyWebhooks:
    """Answers Twilio's Voice webhooks `<Reject reason="busy"/>` while `in_progress()` calls
    are `max_calls` or more."""

    def __init__(
        self,
        app: ASGIApp,
        max_calls: int,
        in_progress: Callable[[], int],
        counts: LimitCounts,
    ) -> None:
        self.app = app
        self._max = max_calls
        self._in_progress = in_progress
        self._counts = counts
        busy = VoiceResponse()
        busy.reject(reason="busy")
        self._busy = Response(str(busy.to_xml()), media_type="text/xml")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] not in CALL_WEBHOOKS
            or (calls := self._in_progress()) < self._max
        ):
            await self.app(scope, receive, send)
            return
        log.warning(
            "rejected a call at %s as busy: %d calls in progress (limits.max_calls %d)",
            scope["path"],
            calls,
            self._max,
        )
        self._counts.hit("busy", endpoint_name(scope["path"]))
        await self._busy(scope, receive, send)


class RestRateLimit:
    """A token bucket per API key (per client address without a valid key) for the REST and
    dashboard requests; beyond it, 429 with `Retry-After`."""

    def __init__(
        self,
        app: ASGIApp,
        limits: LimitSettings,
        api_key: str | None,
        counts: LimitCounts,
        respond: ErrorResponder,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app = app
        self._rate = limits.rest_requests_per_s
        self._burst = limits.rest_burst
        self._api_key = api_key.encode() if api_key else None
        self._counts = counts
        self._respond = respond
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        endpoint = endpoint_of(scope["path"]) if scope["type"] == "http" else None
        if endpoint is None or not endpoint.rest:
            await self.app(scope, receive, send)
            return
        client = self._client(scope)
        wait = self._bucket(client).take(1.0, self._clock())
        if not wait:
            await self.app(scope, receive, send)
            return
        retry_after = max(1, math.ceil(wait))
        log.warning(
            "%s: too many requests from %s (limits.rest_requests_per_s %g); answered 429",
            scope["path"],
            "the API key" if client == "key" else client,
            self._rate,
        )
        self._counts.hit("rest_rate", endpoint.name)
        response = self._respond(
            HTTPStatus.TOO_MANY_REQUESTS,
            "rate_limited",
            f"More than {self._rate:g} requests per second; try again in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
        await response(scope, receive, send)

    def _client(self, scope: Scope) -> str:
        """ "key" for requests with the API key, else the client's address."""
        if self._api_key is not None:
            for name, value in scope["headers"]:
                if name == API_KEY_HEADER and hmac.compare_digest(value, self._api_key):
                    return "key"
        client = scope.get("client")
        return f"address {client[0]}" if client else "address unknown"

    def _bucket(self, client: str) -> TokenBucket:
        """The client's bucket, now the most recently used."""
        bucket = self._buckets.pop(client, None)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst, self._clock())
            if len(self._buckets) >= MAX_CLIENTS:
                del self._buckets[next(iter(self._buckets))]
        self._buckets[client] = bucket
        return bucket
