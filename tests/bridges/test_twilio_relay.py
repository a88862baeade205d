"""Contract tests for the ConversationRelay bridge: sessions through a real uvicorn server on
loopback and a real WebSocket client playing Twilio's side (`farends.twilio_relay`).

Protocol facts (https://www.twilio.com/docs/voice/conversationrelay/websocket-messages, CATALOG
§2): Twilio sends `setup`, `prompt` (`last: false` for interim results), `dtmf`, `interrupt`
and `error`; the server may send only `text` (`token`, `last`, optional `lang`,
`interruptible`, `preemptible`), `play`, `sendDigits` (`digits` of 0-9 w # *), `language` and
`end` (`handoffData`, a string), with exactly those fields.
"""

from __future__ import annotations

import asyncio
import json
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from opusagent.app import create_app
from opusagent.bridges.farends.twilio_relay import (
    RelayClient,
    converse,
    relay_session,
    signature_headers,
)
from opusagent.bridges.twilio_relay import mount_twilio_relay
from opusagent.call.events import AgentStatus, HangUp, SendDtmf, Transfer
from opusagent.call.stages import HistoryEntry, ReplyPart, Speaker, TurnKind, UserTurn
from opusagent.config import Settings
from opusagent.testing import ScriptedAgent

from .twilio_api_fake import AUTH_TOKEN, serving

ReplyScript = Callable[[UserTurn], Sequence[ReplyPart] | str]
PUBLIC_URL = "https://voice.example.test"
WITHIN_S = 3.0
RELAY_LOGGER = "opusagent.bridges.twilio_relay"
# Every field each server message may carry (CATALOG §2.4); `type` and the required ones always.
ALLOWED = {
    "text": {"type", "token", "last", "lang", "interruptible", "preemptible"},
    "play": {"type", "source", "loop", "preemptible", "interruptible"},
    "sendDigits": {"type", "digits"},
    "language": {"type", "ttsLanguage", "transcriptionLanguage"},
    "end": {"type", "handoffData"},
}
REQUIRED = {"text": {"type", "token"}, "sendDigits": {"type", "digits"}, "end": {"type"}}


def echo(turn: UserTurn) -> Sequence[ReplyPart] | str:
    if turn.kind is TurnKind.START:
        return ["Hello ", "and welcome."]
    return f"You said {turn.text or turn.dtmf}."


class RecordingAgent(ScriptedAgent):
    """A scripted agent that also says when it learnt the session ended."""

    def __init__(self, script: ReplyScript) -> None:
        super().__init__(script)
        self.hung_up = asyncio.Event()

    async def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        if turn.kind is TurnKind.HANGUP:
            self.hung_up.set()
        async for part in super().respond(turn):
            yield part


@dataclass
class Agents:
    """An AgentFactory of scripted agents; remembers each session's agent and parameters."""

    script: ReplyScript = echo
    made: dict[str, RecordingAgent] = field(default_factory=dict)
    params: dict[str, Mapping[str, str]] = field(default_factory=dict)

    def __call__(self, call_id: str, params: Mapping[str, str]) -> RecordingAgent:
        agent = RecordingAgent(self.script)
        self.made[call_id] = agent
        self.params[call_id] = params
        return agent


class GatedAgent:
    """Greets with two tokens, then waits for `gate` before each further one; notes when its
    reply is closed."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.greeting_closed = asyncio.Event()
        self.turns: list[UserTurn] = []

    async def respond(self, turn: UserTurn) -> AsyncIterator[ReplyPart]:
        self.turns.append(turn)
        if turn.kind is not TurnKind.START:
            yield "Okay."
            return
        try:
            yield "Welcome "
            yield "to "
            for word in ["the ", "bank."]:
                await self.gate.wait()
                yield word
        finally:
            self.greeting_closed.set()


def make_app(agents: Any, auth_token: str | None = None) -> FastAPI:
    app = create_app(Settings(), loaders={}, bridges=False)
    mount_twilio_relay(app, agents, auth_token=auth_token, public_url=PUBLIC_URL)
    return app


def relay_url(base: str) -> str:
    return base.replace("http://", "ws://") + "/twilio/relay"


def wire(client: RelayClient) -> list[dict[str, Any]]:
    """What the server sent, as JSON objects, each checked against CATALOG §2.4."""
    assert client.errors == []
    messages = [json.loads(m.wire()) for _, m in client.received]
    for message in messages:
        kind = message["type"]
        assert set(message) <= ALLOWED[kind], message
        assert REQUIRED.get(kind, {"type"}) <= set(message), message
    return messages


def agent_entries(history: Sequence[HistoryEntry]) -> list[HistoryEntry]:
    return [entry for entry in history if entry.speaker is Speaker.AGENT]


async def test_setup_streams_the_greeting_then_ends_the_talk_cycle() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup({"tenant": "acme"})
        greeting = await twilio.reply(WITHIN_S)

    assert greeting is not None and greeting.text == "Hello and welcome."
    assert wire(twilio) == [
        {"type": "text", "token": "Hello ", "last": False},
        {"type": "text", "token": "and welcome.", "last": False},
        {"type": "text", "token": "", "last": True},
    ]
    [call_id] = agents.made
    assert call_id == twilio.call_sid
    assert agents.params[call_id] == {"tenant": "acme"}
    assert agents.made[call_id].turns[0].kind is TurnKind.START


async def test_a_last_prompt_gets_a_reply_and_partial_prompts_do_not() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await twilio.reply(WITHIN_S)
        await twilio.prompt("my card", last=False)
        await twilio.prompt("my card is", last=False)
        await twilio.prompt("my card is lost")
        reply = await twilio.reply(WITHIN_S)

    assert reply is not None and reply.text == "You said my card is lost."
    turns = agents.made[twilio.call_sid].turns
    assert [(t.kind, t.text) for t in turns[:2]] == [
        (TurnKind.START, ""),
        (TurnKind.SPEECH, "my card is lost"),
    ]
    assert turns[1].history == (
        HistoryEntry(Speaker.AGENT, "Hello and welcome.", generated="Hello and welcome."),
        HistoryEntry(Speaker.CALLER, "my card is lost"),
    )
    assert [m["token"] for m in wire(twilio)[3:]] == ["You said my card is lost.", ""]


class LogSeen(logging.Handler):
    """Sets `seen` when a record containing `text` is logged (the server runs on this loop)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.seen.set()


async def test_interrupt_stops_the_reply_and_keeps_what_was_heard(
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = GatedAgent()
    interrupted = LogSeen("interrupted")
    caplog.set_level(logging.INFO, logger=RELAY_LOGGER)
    relay_log = logging.getLogger(RELAY_LOGGER)
    relay_log.addHandler(interrupted)
    try:
        async with serving(make_app(lambda *_: agent)) as base, relay_session(relay_url(base)) as t:
            await t.setup()
            await t.wait_for(lambda: len(t.texts()) == 2, WITHIN_S)
            await t.interrupt("Welcome", 460)
            await asyncio.wait_for(interrupted.seen.wait(), WITHIN_S)
            agent.gate.set()  # the agent would go on; its words must go nowhere
            await asyncio.wait_for(agent.greeting_closed.wait(), WITHIN_S)
            await t.prompt("stop")
            reply = await t.reply(WITHIN_S)
    finally:
        relay_log.removeHandler(interrupted)

    assert reply is not None and reply.text == "Okay."
    assert [(m["token"], m["last"]) for m in wire(t)] == [
        ("Welcome ", False),
        ("to ", False),
        ("Okay.", False),
        ("", True),
    ]
    speech = agent.turns[1]
    assert speech.kind is TurnKind.SPEECH
    assert speech.history == (
        HistoryEntry(Speaker.AGENT, "Welcome", interrupted=True, generated="Welcome to "),
        HistoryEntry(Speaker.CALLER, "stop"),
    )


async def test_interrupt_after_a_whole_reply_keeps_only_what_was_heard() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await twilio.reply(WITHIN_S)
        await twilio.interrupt("Hello and", 700)
        await twilio.prompt("hi")
        await twilio.reply(WITHIN_S)

    history = agents.made[twilio.call_sid].turns[1].history
    assert agent_entries(history) == [
        HistoryEntry(Speaker.AGENT, "Hello and", interrupted=True, generated="Hello and welcome.")
    ]


async def test_dtmf_reaches_the_agent() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await twilio.reply(WITHIN_S)
        await twilio.dtmf("5")
        reply = await twilio.reply(WITHIN_S)

    assert reply is not None and reply.text == "You said 5."
    turn = agents.made[twilio.call_sid].turns[1]
    assert (turn.kind, turn.dtmf) == (TurnKind.DTMF, "5")
    assert turn.history[-1] == HistoryEntry(Speaker.CALLER, "", dtmf="5")


async def test_agent_hang_up_ends_the_session_with_handoff_data() -> None:
    agents = Agents(lambda t: ["Goodbye.", HangUp("done")] if t.kind is TurnKind.START else [])
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await asyncio.wait_for(twilio.closed.wait(), WITHIN_S)

    messages = wire(twilio)
    assert messages[:2] == [
        {"type": "text", "token": "Goodbye.", "last": False},
        {"type": "text", "token": "", "last": True},
    ]
    [end] = messages[2:]
    assert set(end) == {"type", "handoffData"} and end["type"] == "end"
    assert isinstance(end["handoffData"], str)
    assert json.loads(end["handoffData"]) == {"reasonCode": "hangup", "reason": "done"}
    await asyncio.wait_for(agents.made[twilio.call_sid].hung_up.wait(), WITHIN_S)


async def test_agent_transfer_ends_the_session_naming_the_target() -> None:
    agents = Agents(lambda t: ["One moment.", Transfer("+15550123", "billing")])
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await asyncio.wait_for(twilio.closed.wait(), WITHIN_S)

    end = wire(twilio)[-1]
    assert end["type"] == "end"
    assert json.loads(end["handoffData"]) == {
        "reasonCode": "transfer",
        "reason": "billing",
        "target": "+15550123",
    }


async def test_agent_dtmf_is_sent_as_send_digits_after_the_text_before_it() -> None:
    agents = Agents(lambda t: ["Dialling.", SendDtmf("12w#"), "Done."])
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await twilio.reply(WITHIN_S)
        await twilio.reply(WITHIN_S)

    assert wire(twilio) == [
        {"type": "text", "token": "Dialling.", "last": False},
        {"type": "text", "token": "", "last": True},
        {"type": "sendDigits", "digits": "12w#"},
        {"type": "text", "token": "Done.", "last": False},
        {"type": "text", "token": "", "last": True},
    ]


async def test_digits_relay_cannot_play_are_not_sent() -> None:
    agents = Agents(lambda t: [SendDtmf("A1"), "Done."])
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await twilio.reply(WITHIN_S)

    assert [m["type"] for m in wire(twilio)] == ["text", "text"]


async def test_agent_status_parts_send_nothing() -> None:
    agents = Agents(lambda t: [AgentStatus("greeting"), "Hi.", AgentStatus("menu")])
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await twilio.reply(WITHIN_S)

    assert wire(twilio) == [
        {"type": "text", "token": "Hi.", "last": False},
        {"type": "text", "token": "", "last": True},
    ]


async def test_malformed_messages_are_ignored_and_the_session_goes_on() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.send_raw(json.dumps({"type": "prompt", "voicePrompt": "too early"}))
        for bad in [
            "not json",
            "[1, 2]",
            '{"no": "type"}',
            '{"type": "bogus"}',
            '{"type": "setup"}',
            b"\x00binary",
        ]:
            await twilio.send_raw(bad)
        await twilio.setup()
        await twilio.reply(WITHIN_S)
        for bad in [
            '{"type": "prompt", "last": true}',
            '{"type": "dtmf", "digit": "x"}',
            '{"type": "interrupt", "durationUntilInterruptMs": "soon"}',
            json.dumps({"type": "error", "description": "Invalid message received"}),
            json.dumps({"type": "info", "name": "tokensPlayed", "value": "Hello"}),
        ]:
            await twilio.send_raw(bad)
        await twilio.setup()  # a second setup on one session is ignored
        await twilio.prompt("still there?")
        reply = await twilio.reply(WITHIN_S)

    assert reply is not None and reply.text == "You said still there?."
    assert len(agents.made) == 1
    turns = agents.made[twilio.call_sid].turns
    assert [t.kind for t in turns[:2]] == [TurnKind.START, TurnKind.SPEECH]
    wire(twilio)


async def test_interrupt_given_as_a_string_of_digits_is_accepted() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await twilio.reply(WITHIN_S)
        await twilio.send_raw(
            json.dumps(
                {
                    "type": "interrupt",
                    "utteranceUntilInterrupt": "Hello",
                    "durationUntilInterruptMs": "460",
                }
            )
        )
        await twilio.prompt("hi")
        await twilio.reply(WITHIN_S)

    [greeting] = agent_entries(agents.made[twilio.call_sid].turns[1].history)
    assert (greeting.text, greeting.interrupted) == ("Hello", True)


async def test_caller_hang_up_tells_the_agent() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base:
        async with relay_session(relay_url(base)) as twilio:
            await twilio.setup()
            await twilio.reply(WITHIN_S)
        await asyncio.wait_for(agents.made[twilio.call_sid].hung_up.wait(), WITHIN_S)


async def test_an_agent_that_cannot_be_built_closes_the_session() -> None:
    def no_agent(call_id: str, params: Mapping[str, str]) -> ScriptedAgent:
        raise RuntimeError("no such agent")

    async with serving(make_app(no_agent)) as base, relay_session(relay_url(base)) as twilio:
        await twilio.setup()
        await asyncio.wait_for(twilio.closed.wait(), WITHIN_S)
    assert twilio.ws.close_code == 1011
    assert twilio.received == []


async def test_two_sessions_stay_isolated() -> None:
    agents = Agents(lambda t: f"Hi {t.text}." if t.text else "Hello.")

    async def session(url: str, who: str) -> RelayClient:
        async with relay_session(url, call_sid=f"CA-{who}") as twilio:
            await twilio.setup({"who": who})
            await twilio.reply(WITHIN_S)
            await twilio.prompt(who)
            await twilio.reply(WITHIN_S)
        return twilio

    async with serving(make_app(agents)) as base:
        url = relay_url(base)
        alice, bob = await asyncio.gather(session(url, "alice"), session(url, "bob"))

    assert alice.transcript().agent_lines() == ["Hello.", "Hi alice."]
    assert bob.transcript().agent_lines() == ["Hello.", "Hi bob."]
    assert agents.params == {"CA-alice": {"who": "alice"}, "CA-bob": {"who": "bob"}}
    for who in ("alice", "bob"):
        caller = [e.text for e in agents.made[f"CA-{who}"].turns[1].history if e.text == who]
        assert caller == [who]


async def test_converse_plays_a_whole_session() -> None:
    agents = Agents()
    async with serving(make_app(agents)) as base:
        transcript = await converse(relay_url(base), ["my card is lost"], dtmf="42")

    assert [(line.speaker, line.text or line.dtmf) for line in transcript.lines] == [
        ("agent", "Hello and welcome."),
        ("caller", "my card is lost"),
        ("agent", "You said my card is lost."),
        ("caller", "4"),
        ("agent", "You said 4."),
        ("caller", "2"),
        ("agent", "You said 2."),
    ]
    assert transcript.errors == () and not transcript.ended_by_server
    for line in transcript.lines:
        if line.speaker == "agent":
            assert line.latency_s is not None and 0 <= line.latency_s < WITHIN_S
            assert line.at_s <= line.end_s


# --- signatures, TwiML and the action URL --------------------------------------------------


@pytest.mark.parametrize("signature", [None, "bm90IGEgc2lnbmF0dXJl"])
async def test_session_without_a_valid_signature_is_refused(signature: str | None) -> None:
    agents = Agents()
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    async with serving(make_app(agents, auth_token=AUTH_TOKEN)) as base:
        with pytest.raises(InvalidStatus) as refused:
            async with connect(relay_url(base), additional_headers=headers):
                pass
    assert refused.value.response.status_code == 403
    assert agents.made == {}


async def test_session_with_a_valid_signature_is_served() -> None:
    agents = Agents()
    async with serving(make_app(agents, auth_token=AUTH_TOKEN)) as base:
        signed = signature_headers("wss://voice.example.test/twilio/relay", AUTH_TOKEN)
        transcript = await converse(relay_url(base), [], headers=signed)
    assert transcript.agent_lines() == ["Hello and welcome."]


async def post(
    app: FastAPI, path: str, form: Mapping[str, str], headers: Mapping[str, str] | None = None
) -> httpx.Response:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=PUBLIC_URL) as http,
    ):
        return await http.post(path, data=form, headers=headers)


VOICE_FORM = {"CallSid": "CA0001", "From": "+15550100", "To": "+15550199", "Direction": "inbound"}


async def test_voice_webhook_answers_connect_conversation_relay_twiml() -> None:
    response = await post(make_app(Agents()), "/twilio/relay/voice?agent=bank", VOICE_FORM)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    root = ET.fromstring(response.text)
    [connect_el] = list(root)
    assert connect_el.tag == "Connect"
    assert connect_el.attrib == {"action": f"{PUBLIC_URL}/twilio/relay/action"}
    [relay] = list(connect_el)
    assert relay.tag == "ConversationRelay"
    assert relay.attrib == {
        "url": "wss://voice.example.test/twilio/relay",
        "dtmfDetection": "true",
        "interruptible": "any",
    }
    assert all(p.tag == "Parameter" for p in relay)
    assert {p.attrib["name"]: p.attrib["value"] for p in relay} == {
        "From": "+15550100",
        "To": "+15550199",
        "Direction": "inbound",
        "agent": "bank",
    }


async def test_voice_webhook_checks_the_signature() -> None:
    app = make_app(Agents(), auth_token=AUTH_TOKEN)
    unsigned = await post(app, "/twilio/relay/voice", VOICE_FORM)
    assert unsigned.status_code == 403
    assert unsigned.json()["error"]["code"] == "forbidden"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(
        f"{PUBLIC_URL}/twilio/relay/voice", VOICE_FORM
    )
    signed = await post(app, "/twilio/relay/voice", VOICE_FORM, {"X-Twilio-Signature": signature})
    assert signed.status_code == 200


@pytest.mark.parametrize(
    ("handoff", "expected"),
    [
        (
            '{"reasonCode":"transfer","reason":"billing","target":"+15550123"}',
            "<Response><Dial><Number>+15550123</Number></Dial></Response>",
        ),
        ('{"reasonCode":"hangup","reason":"done"}', "<Response><Hangup /></Response>"),
        ("not ours", "<Response><Hangup /></Response>"),
        (None, "<Response><Hangup /></Response>"),
    ],
)
async def test_action_url_dials_a_transfer_target_or_hangs_up(
    handoff: str | None, expected: str
) -> None:
    form = {"CallSid": "CA0001", **({"HandoffData": handoff} if handoff is not None else {})}
    response = await post(make_app(Agents()), "/twilio/relay/action", form)
    assert response.status_code == 200
    assert ET.tostring(ET.fromstring(response.text)).decode() == expected
