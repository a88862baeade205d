"""Twilio's REST API: hang up, transfer and place calls; send text messages.

Protocol facts (twilio-python `twilio/rest/api/v2010/account/call/__init__.py`, and
https://www.twilio.com/docs/voice/api/call-resource):

- a live call is changed with `POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`:
  form field `Status=completed` ends it; `Twiml=<Response>…` replaces the TwiML it is running
  (so a `<Dial>` transfers it, and a running `<Connect><Stream>` ends);
- a call that has already ended answers HTTP 404 with Twilio error code 20404;
- a call is placed with `POST …/Calls.json`: `To`, `From`, `Twiml` (at most 4000 characters),
  `StatusCallback`, `StatusCallbackEvent` (once per event: initiated, ringing, answered,
  completed) and `StatusCallbackMethod`; the answer is the call resource (JSON) with its `sid`;
- a text message is sent with `POST …/Messages.json`: `To`, `From`, `Body`; the answer is the
  message resource with its `sid` and `status` (https://www.twilio.com/docs/messaging/api/message-resource).

Every request goes through the SDK's asynchronous client (`AsyncTwilioHttpClient` and the
`*_async` methods): nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError
from twilio.base.exceptions import TwilioException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from opusagent.config import BridgeSettings

log = logging.getLogger(__name__)

CALL_NOT_FOUND = 20404
"""Twilio error code for a call that does not exist (any more): it has already ended."""
TWIML_MAX_CHARS = 4000
"""Longest `Twiml` a call may be created with (twilio-python `create` docstring)."""
STATUS_EVENTS = ("initiated", "ringing", "answered", "completed")
"""Every call progress event a status callback can report."""
REQUEST_TIMEOUT_S = 10.0


class TwilioApiError(Exception):
    """Twilio refused a request (or could not be reached: then `status` and `code` are None)."""

    def __init__(self, what: str, message: str, status: int | None, code: int | None) -> None:
        detail = ", ".join(
            part
            for part in (f"HTTP {status}" if status else "", f"error {code}" if code else "")
            if part
        )
        super().__init__(f"{what}: {message}" + (f" ({detail})" if detail else ""))
        self.status = status
        self.code = code

    @property
    def call_gone(self) -> bool:
        return self.status == 404 and self.code == CALL_NOT_FOUND


@dataclass(frozen=True, slots=True)
class CreatedCall:
    """Twilio's answer to a new call: its SID and first status (usually `queued`)."""

    sid: str
    status: str


@dataclass(frozen=True, slots=True)
class CreatedMessage:
    """Twilio's answer to a new text message: its SID and first status (usually `queued`)."""

    sid: str
    status: str


class TwilioRest:
    """The REST requests the Twilio bridges need, for one account.

    `http_client` is an asynchronous twilio-python HTTP client (`twilio.http.AsyncHttpClient`,
    the SDK's hook for custom transports); by default an `AsyncTwilioHttpClient` that opens a
    connection per request, so nothing is held between the rare requests this makes and nothing
    needs closing at shutdown. Each request is given `timeout_s` (the SDK's async client does
    not apply its own timeout).
    """

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        http_client: Any = None,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        http = http_client or AsyncTwilioHttpClient(pool_connections=False)
        self._client = Client(account_sid, auth_token, http_client=http)
        self._timeout_s = timeout_s
        self.account_sid = account_sid

    async def hang_up(self, call_sid: str) -> bool:
        """End the call; False when it had already ended (which is fine)."""
        try:
            await self._update(call_sid, f"hang up call {call_sid}", status="completed")
        except TwilioApiError as exc:
            if not exc.call_gone:
                raise
            log.info("call %s: had already ended when we hung up", call_sid)
            return False
        return True

    async def transfer(self, call_sid: str, target: str) -> None:
        """Connect the caller to `target` (a phone number or a `sip:` address) instead."""
        await self._update(
            call_sid, f"transfer call {call_sid} to {target}", twiml=dial_twiml(target)
        )

    async def create_call(
        self,
        *,
        to: str,
        from_: str,
        twiml: str,
        status_callback: str,
        status_events: Sequence[str] = STATUS_EVENTS,
    ) -> CreatedCall:
        """Place a call from `from_` to `to` that runs `twiml` once answered."""
        call = await self._request(
            f"call {to} from {from_}",
            lambda: self._client.calls.create_async(
                to=to,
                from_=from_,
                twiml=twiml,
                status_callback=status_callback,
                status_callback_event=list(status_events),
                status_callback_method="POST",
            ),
        )
        return CreatedCall(sid=str(call.sid), status=str(call.status))

    async def send_sms(self, *, to: str, from_: str, body: str) -> CreatedMessage:
        """Text `body` to `to` from `from_` (a Twilio number of this account)."""
        message = await self._request(
            f"text {to} from {from_}",
            lambda: self._client.messages.create_async(to=to, from_=from_, body=body),
        )
        return CreatedMessage(sid=str(message.sid), status=str(message.status))

    async def _update(self, call_sid: str, what: str, **fields: str) -> None:
        await self._request(what, lambda: self._client.calls(call_sid).update_async(**fields))

    async def _request(self, what: str, send: Callable[[], Awaitable[Any]]) -> Any:
        """`send()`'s answer; any failure is a `TwilioApiError` saying `what` failed."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await send()
        except TwilioException as exc:
            raise _api_error(what, exc) from exc
        except TimeoutError as exc:
            message = f"Twilio did not answer within {self._timeout_s:g} s"
            raise TwilioApiError(what, message, None, None) from exc
        except (OSError, ClientError) as exc:
            raise TwilioApiError(what, f"Twilio could not be reached ({exc})", None, None) from exc


def _api_error(what: str, exc: TwilioException) -> TwilioApiError:
    status = getattr(exc, "status", None)
    code = getattr(exc, "code", None)
    message = getattr(exc, "msg", None) or getattr(exc, "title", None) or type(exc).__name__
    return TwilioApiError(
        what,
        str(message),
        status if isinstance(status, int) else None,
        code if isinstance(code, int) else None,
    )


def dial_twiml(target: str) -> str:
    """`<Response><Dial>target</Dial></Response>`, with `<Sip>` for a `sip:` address.

    https://www.twilio.com/docs/voice/twiml/dial and https://www.twilio.com/docs/voice/twiml/sip
    """
    dial = Dial()
    if target.lower().startswith("sip:"):
        dial.sip(target)
    else:
        dial.number(target)
    response = VoiceResponse()
    response.append(dial)
    return str(response.to_xml())


def rest_from_settings(settings: BridgeSettings) -> TwilioRest | None:
    """The REST client for the configured account; None without an account SID and token."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return None
    return TwilioRest(settings.twilio_account_sid, settings.twilio_auth_token)
