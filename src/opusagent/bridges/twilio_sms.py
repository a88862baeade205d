"""Twilio Messaging: carry on a conversation by SMS.

A caller whose call dropped may have been texted a resume code (the `resume_code` and
`send_sms` tools); replying with it continues the same Finite State Agent session by text, and
later messages from the same number continue it too. `POST /twilio/sms` is the number's
Messaging webhook (form fields `From`, `To`, `Body`, `MessageSid`; signed with
`X-Twilio-Signature` like every Twilio webhook); the answer is TwiML
`<Response><Message>…</Message></Response>`, sent back to the sender
(https://www.twilio.com/docs/messaging/twiml/message).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, Response
from twilio.twiml.messaging_response import MessagingResponse

from opusagent.bridges.twilio_media import TwilioWebhooks
from opusagent.sessions.links import Links
from opusagent.sessions.store import SessionStoreUnavailable, StaleWriteError
from opusagent.sessions.text import TextConversations, UnknownConversationError, code_in

log = logging.getLogger(__name__)

SMS_PATH = "/twilio/sms"
NO_CONVERSATION = (
    "Sorry, I can't find a conversation to continue. Reply with the six-digit code we sent you."
)
MOVED_ON = "This conversation has carried on elsewhere, so I can't take that message here."
UNAVAILABLE = "Sorry, I can't reach our records just now. Please try again in a minute."


def message_twiml(text: str) -> str:
    response = MessagingResponse()
    if text:
        response.message(text)
    return str(response.to_xml())


def mount_twilio_sms(
    app: FastAPI,
    texts: TextConversations,
    links: Links,
    *,
    auth_token: str | None,
    public_url: str | None,
) -> None:
    """Serve `POST /twilio/sms`: messages continue conversations by resume code and number."""
    webhooks = TwilioWebhooks(auth_token=auth_token, public_url=public_url)

    @app.post(SMS_PATH, summary="Twilio Messaging webhook: carry on a conversation by SMS")
    async def twilio_sms(request: Request) -> Response:
        form = await webhooks.form(request)
        sender, body = form.get("From", ""), form.get("Body", "").strip()
        try:
            reply = await _answer(texts, links, sender, body)
        except UnknownConversationError:
            reply = NO_CONVERSATION
        except StaleWriteError:
            reply = MOVED_ON
        except SessionStoreUnavailable as exc:
            log.error("SMS from %s not answered: %s", sender, exc)
            reply = UNAVAILABLE
        return Response(message_twiml(reply), media_type="text/xml")


async def _answer(texts: TextConversations, links: Links, sender: str, body: str) -> str:
    code = code_in(body)
    if code is not None:
        reply = await texts.resume(code)
        await links.put(f"sms:{sender}", reply.call_id)
        log.info("SMS from %s carries on conversation %s", sender, reply.call_id)
        return reply.text
    call_id = await links.get(f"sms:{sender}")
    if call_id is None:
        raise UnknownConversationError(f"no conversation for {sender}")
    return (await texts.say(call_id, body)).text
