"""Tools every agent has: transfer, hang up, send digits, send a text message, look up an answer.

`transfer`, `hangup` and `send_dtmf` return the call action; the bridge performs it for real
(e.g. Twilio's REST API) after the speech before it has played.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from pydantic import Field

from opusagent.agent.knowledge import KnowledgeBase
from opusagent.agent.tools.registry import ToolContext, ToolError, ToolRegistry
from opusagent.bridges.twilio_rest import TwilioApiError
from opusagent.call.events import HangUp, SendDtmf, Transfer

Digits = Annotated[str, Field(pattern=r"^[0-9*#A-Dw]+$")]


def transfer(target: str, reason: str = "") -> Transfer:
    """Hand the caller to a human: a phone number, SIP URI or queue name."""
    return Transfer(target, reason)


def hangup(reason: str = "agent") -> HangUp:
    """End the call."""
    return HangUp(reason)


def send_dtmf(digits: Digits) -> SendDtmf:
    """Play DTMF digits into the call (w is a half-second pause)."""
    return SendDtmf(digits)


async def send_sms(body: str, context: ToolContext, to: str | None = None) -> dict[str, Any]:
    """Send a text message to the caller (or `to`) through Twilio Messaging."""
    if context.twilio is None:
        raise ToolError(
            "send_sms needs OPUSAGENT_BRIDGES__TWILIO_ACCOUNT_SID and "
            "OPUSAGENT_BRIDGES__TWILIO_AUTH_TOKEN"
        )
    recipient = to or str(context.context.get("caller", ""))
    sender = str(context.context.get("To", "")) or context.sms_from
    if not recipient or not sender:
        raise ToolError("send_sms needs the caller's number and a number to send from")
    try:
        sent = await context.twilio.send_sms(to=recipient, from_=sender, body=body)
    except TwilioApiError as exc:
        raise ToolError(f"send_sms: {exc}") from exc
    return {"sid": sent.sid, "status": sent.status}


def lookup(query: str, context: ToolContext) -> dict[str, Any]:
    """Find the answer to the caller's question in the agent's knowledge base."""
    knowledge = context.knowledge
    if not isinstance(knowledge, KnowledgeBase):
        raise ToolError("lookup needs a knowledge base (the agent file's `knowledge`)")
    return asdict(knowledge.search(query))


def builtin_tools() -> ToolRegistry:
    registry = ToolRegistry()
    for function in (transfer, hangup, send_dtmf, lookup):
        registry.register(function, timeout_s=2.0)
    registry.register(send_sms, timeout_s=10.0)
    return registry
