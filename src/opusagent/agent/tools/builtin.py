"""Tools every agent has: transfer, hang up, send digits, send a text message, look up an answer.

`resume_code` issues a code to carry on later (by SMS, a web chat or a new call);
`resume_session` carries on the conversation of a code presented on a new call.
`transfer`, `hangup` and `send_dtmf` return the call action; the bridge performs it for real
(e.g. Twilio's REST API) after the speech before it has played.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from pydantic import Field

from opusagent.agent.knowledge import KnowledgeBase
from opusagent.agent.tools.registry import AdoptConversation, ToolContext, ToolError, ToolRegistry
from opusagent.bridges.twilio_rest import TwilioApiError
from opusagent.call.events import HangUp, SendDtmf, Transfer
from opusagent.sessions.links import issue_code
from opusagent.sessions.store import SessionStoreUnavailable

Digits = Annotated[str, Field(pattern=r"^[0-9*#A-Dw]+$")]
CodeDigits = Annotated[str, Field(pattern=r"^[0-9]{6}$")]


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
    for function in (transfer, hangup, send_dtmf, lookup, resume_code, resume_session):
        registry.register(function, timeout_s=2.0)
    registry.register(send_sms, timeout_s=10.0)
    return registry


async def resume_code(context: ToolContext) -> dict[str, Any]:
    """Issue a six-digit code with which the caller can carry on this conversation by text or
    on a later call (`code`, and `spoken`: its digits read one by one)."""
    if context.links is None:
        raise ToolError("resume_code needs the session links (a served call)")
    try:
        code = await issue_code(context.links, context.call_id)
    except SessionStoreUnavailable as exc:
        raise ToolError(f"resume_code: {exc}") from exc
    return {"code": code, "spoken": " ".join(code)}


async def resume_session(code: CodeDigits, context: ToolContext) -> AdoptConversation:
    """Carry on the conversation the resume `code` was issued for."""
    if context.links is None or context.sessions is None:
        raise ToolError("resume_session needs the session store (a served call)")
    try:
        call_id = await context.links.get(f"code:{code}")
        record = await context.sessions.load(call_id) if call_id else None
    except SessionStoreUnavailable as exc:
        raise ToolError(f"resume_session: {exc}") from exc
    if record is None or record.ended:
        raise ToolError(f"no conversation to carry on with the code {code}")
    return AdoptConversation(record.call_id, record.state)
