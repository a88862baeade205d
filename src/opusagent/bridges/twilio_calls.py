"""Outbound calls through Twilio: `POST /calls`, `GET /calls/active`, and Twilio's status
callbacks (`POST /twilio/status`), which keep each call's record current.

A call is placed with Twilio's REST API (`TwilioRest.create_call`) running TwiML that connects
it, once answered, to this server's Media Streams bridge (`<Connect><Stream>`) or its
ConversationRelay bridge (`<Connect><ConversationRelay>`), with `<Parameter>`s naming the agent
and carrying the request's `params`. Twilio reports the call's progress (initiated, ringing,
answered, completed) to the status callback as a signed form with `CallSid` and `CallStatus`
(https://www.twilio.com/docs/voice/api/call-resource#statuscallback).

The REST API here is protected by the `X-API-Key` header when an API key is configured.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Literal

from fastapi import Depends, FastAPI, HTTPException, Request, Response, Security
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from opusagent.bridges.twilio_media import MEDIA_PATH, TwilioWebhooks, stream_twiml
from opusagent.bridges.twilio_relay import RELAY_ACTION_PATH, RELAY_PATH, relay_twiml
from opusagent.bridges.twilio_rest import TWIML_MAX_CHARS, TwilioApiError, TwilioRest
from opusagent.config import BridgeSettings

log = logging.getLogger(__name__)

CALLS_PATH = "/calls"
ACTIVE_CALLS_PATH = "/calls/active"
STATUS_PATH = "/twilio/status"
API_KEY_HEADER = "X-API-Key"
AGENT_PARAMETER = "agent"
FINAL_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
"""Call statuses after which nothing more happens to a call."""
KEEP_FINISHED = 1000
"""Finished calls kept in memory; older ones are forgotten first."""

Bridge = Literal["media", "relay"]


class OutboundCallRequest(BaseModel):
    """The body of `POST /calls`."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    to: str = Field(min_length=1, description="Number (E.164), SIP address or client to call.")
    from_: str | None = Field(
        None,
        alias="from",
        min_length=1,
        description="Caller ID (a Twilio number of the account); default: twilio_from_number.",
    )
    agent: str = Field(min_length=1, description="The agent that talks to the callee.")
    bridge: Bridge = Field(
        "media", description="media: our speech over Media Streams; relay: ConversationRelay."
    )
    params: dict[str, str] = Field(
        default_factory=dict, description="Passed to the agent as the call's parameters."
    )

    @field_validator("params")
    @classmethod
    def _agent_is_not_a_param(cls, params: dict[str, str]) -> dict[str, str]:
        if AGENT_PARAMETER in params:
            raise ValueError(f"'{AGENT_PARAMETER}' is given as the request's own field")
        return params


class CallRecord(BaseModel):
    """What we know of a call we placed."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    sid: str
    to: str
    from_: str = Field(alias="from")
    agent: str
    bridge: Bridge
    params: dict[str, str]
    status: str
    """Twilio's call status: queued, initiated, ringing, in-progress, completed, busy, ..."""
    created_at: datetime
    updated_at: datetime


class ActiveCalls(BaseModel):
    calls: list[CallRecord]


class StatusCallback(BaseModel):
    """The fields of Twilio's status callback this server uses."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    call_sid: str = Field(alias="CallSid", min_length=1)
    call_status: str = Field(alias="CallStatus", min_length=1)


class CallRecords:
    """The calls this process placed, in memory (lost on restart)."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._records: dict[str, CallRecord] = {}

    def add(
        self,
        *,
        sid: str,
        to: str,
        from_: str,
        agent: str,
        bridge: Bridge,
        params: dict[str, str],
        status: str,
    ) -> CallRecord:
        now = self._clock()
        record = CallRecord(
            sid=sid,
            to=to,
            from_=from_,
            agent=agent,
            bridge=bridge,
            params=params,
            status=status,
            created_at=now,
            updated_at=now,
        )
        self._records[sid] = record
        return record

    def get(self, sid: str) -> CallRecord | None:
        return self._records.get(sid)

    def update_status(self, sid: str, status: str) -> CallRecord | None:
        """The record with its new status; None for a call we did not place.

        A finished call stays finished: Twilio's callbacks can arrive out of order.
        """
        record = self._records.get(sid)
        if record is None or record.status in FINAL_STATUSES:
            return record
        record = record.model_copy(update={"status": status, "updated_at": self._clock()})
        self._records[sid] = record
        if status in FINAL_STATUSES:
            self._forget_old()
        return record

    def active(self) -> list[CallRecord]:
        """Calls not yet finished, oldest first."""
        return [r for r in self._records.values() if r.status not in FINAL_STATUSES]

    def _forget_old(self) -> None:
        finished = [sid for sid, r in self._records.items() if r.status in FINAL_STATUSES]
        for sid in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            del self._records[sid]


_API_KEY = APIKeyHeader(name=API_KEY_HEADER, auto_error=False)


def api_key_guard(api_key: str | None) -> Callable[[str | None], Awaitable[None]]:
    """A dependency refusing (401) requests without `api_key` in `X-API-Key`; with no key
    configured, everything passes (local development)."""

    async def require_api_key(presented: str | None = Security(_API_KEY)) -> None:
        if api_key is None:
            return
        if presented is None or not hmac.compare_digest(presented.encode(), api_key.encode()):
            raise HTTPException(401, f"Missing or invalid {API_KEY_HEADER} header.")

    return require_api_key


def mount_twilio_calls(
    app: FastAPI,
    settings: BridgeSettings,
    *,
    rest: TwilioRest | None,
    records: CallRecords | None = None,
) -> CallRecords:
    """Serve `POST /calls`, `GET /calls/active` and `POST /twilio/status` on `app`.

    `rest` places the calls (None: `POST /calls` answers 503). Calls are connected back to
    `settings.public_url` (or the request's own host) and their status callbacks checked with
    `settings.twilio_auth_token` when set. Returns the records the routes keep.
    """
    calls = records if records is not None else CallRecords()
    webhooks = TwilioWebhooks(auth_token=settings.twilio_auth_token, public_url=settings.public_url)
    protected = [Depends(api_key_guard(settings.api_key))]

    def twiml_for(bridge: Bridge, request: Request, parameters: dict[str, str]) -> str:
        origin, url = webhooks.origin, request.url
        if bridge == "media":
            return stream_twiml(origin.wss(url, MEDIA_PATH), parameters)
        return relay_twiml(
            origin.wss(url, RELAY_PATH), origin.url(url, RELAY_ACTION_PATH), parameters
        )

    @app.post(
        CALLS_PATH,
        status_code=201,
        dependencies=protected,
        summary="Place an outbound call through Twilio; answers its record (with its SID)",
    )
    async def create_call(body: OutboundCallRequest, request: Request) -> CallRecord:
        if rest is None:
            raise HTTPException(
                503, "Outbound calls need twilio_account_sid and twilio_auth_token to be set."
            )
        from_ = body.from_ or settings.twilio_from_number
        if not from_:
            raise HTTPException(422, "No caller ID: give 'from' or set twilio_from_number.")
        twiml = twiml_for(body.bridge, request, {AGENT_PARAMETER: body.agent, **body.params})
        if len(twiml) > TWIML_MAX_CHARS:
            raise HTTPException(
                422,
                f"The call's TwiML would be {len(twiml)} characters; Twilio takes at most "
                f"{TWIML_MAX_CHARS}: pass fewer or shorter params.",
            )
        try:
            created = await rest.create_call(
                to=body.to,
                from_=from_,
                twiml=twiml,
                status_callback=webhooks.origin.url(request.url, STATUS_PATH),
            )
        except TwilioApiError as exc:
            log.warning("outbound call failed: %s", exc)
            raise HTTPException(502, f"Twilio did not place the call: {exc}") from None
        log.info("placed call %s to %s (agent %s)", created.sid, body.to, body.agent)
        return calls.add(
            sid=created.sid,
            to=body.to,
            from_=from_,
            agent=body.agent,
            bridge=body.bridge,
            params=body.params,
            status=created.status,
        )

    @app.get(ACTIVE_CALLS_PATH, dependencies=protected, summary="Calls placed and not finished")
    async def active_calls() -> ActiveCalls:
        return ActiveCalls(calls=calls.active())

    @app.post(STATUS_PATH, status_code=204, summary="Twilio status callback: a call progressed")
    async def twilio_status(request: Request) -> Response:
        form = await webhooks.form(request)
        try:
            update = StatusCallback.model_validate(form)
        except ValidationError:
            raise HTTPException(
                400, "Not a Twilio status callback (CallSid, CallStatus)."
            ) from None
        if calls.update_status(update.call_sid, update.call_status) is None:
            log.info("status %s of call %s, not placed here", update.call_status, update.call_sid)
        return Response(status_code=204)

    return calls
