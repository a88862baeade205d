"""The `send_sms` tool: a text to the caller through Twilio's Messages API (loopback fake)."""

from __future__ import annotations

import pytest

from opusagent.agent.tools.builtin import builtin_tools
from opusagent.agent.tools.registry import ToolContext, ToolError
from opusagent.bridges.twilio_rest import TwilioRest

from .test_twilio_rest import twilio_api

MESSAGES = "/2010-04-01/Accounts/AC00000000000000000000000000000000/Messages.json"


def context(twilio: TwilioRest | None, **facts: str) -> ToolContext:
    return ToolContext(call_id="CA1", slots={}, context=facts, twilio=twilio, sms_from="+15550999")


async def test_texts_the_caller_from_the_number_they_called() -> None:
    sms = builtin_tools().get("send_sms")
    async with twilio_api() as (api, rest):
        result = await sms.call(
            {"body": "Your code is 4417."}, context(rest, caller="+15550001", To="+15550100")
        )

    [request] = api.requests
    assert request.path == MESSAGES
    assert request.fields() == {
        "To": ["+15550001"],
        "From": ["+15550100"],
        "Body": ["Your code is 4417."],
    }
    assert result["status"] == "queued" and result["sid"].startswith("SM")


async def test_falls_back_to_the_configured_sender() -> None:
    sms = builtin_tools().get("send_sms")
    async with twilio_api() as (api, rest):
        await sms.call({"body": "Hi", "to": "+15550002"}, context(rest))

    assert api.requests[0].fields()["From"] == ["+15550999"]


async def test_without_twilio_credentials_it_says_which_settings() -> None:
    sms = builtin_tools().get("send_sms")

    with pytest.raises(ToolError, match="OPUSAGENT_BRIDGES__TWILIO_ACCOUNT_SID"):
        await sms.call({"body": "Hi"}, context(None, caller="+15550001"))


async def test_a_refusal_by_twilio_is_a_tool_error() -> None:
    sms = builtin_tools().get("send_sms")
    async with twilio_api() as (_, rest):
        bad = TwilioRest("AC" + "9" * 32, "wrong", http_client=rest._client.http_client)
        with pytest.raises(ToolError, match="send_sms: text \\+15550001"):
            await sms.call({"body": "Hi"}, context(bad, caller="+15550001"))
