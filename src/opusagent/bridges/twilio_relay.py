"""Twilio ConversationRelay (`<Connect><ConversationRelay>`): messages, conversation and routes.

ConversationRelay does the speech: Twilio recognises the caller and sends text (`prompt`),
speaks the text we stream back (`text` tokens), detects barge-in itself and tells us what the
caller heard (`interrupt`). There is no audio path, so this bridge runs its own small
conversation instead of a `Call`: the same agent, given `UserTurn`s, its replies streamed as
tokens, every reply numbered so an interrupted one is dropped where it meets the current number.

Protocol facts come from Twilio's documentation:

- messages: https://www.twilio.com/docs/voice/conversationrelay/websocket-messages
- TwiML noun: https://www.twilio.com/docs/voice/twiml/connect/conversationrelay
- signature on the upgrade (same algorithm as webhooks):
  https://www.twilio.com/docs/voice/conversationrelay/onboarding

Routes: `WS /twilio/relay` (the session), `POST /twilio/relay/voice` (a number's Voice URL,
answering TwiML that connects the call to the session) and `POST /twilio/relay/action` (the
`<Connect action>` URL, called when the session ends: it dials a transfer target or hangs up).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request, Response, WebSocket
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from starlette.websockets import WebSocketDisconnect
from twilio.twiml.voice_response import Connect, ConversationRelay, Parameter, VoiceResponse

from opusagent.bridges.session import INTERNAL_ERROR, AgentFactory, InvalidMessageError
from opusagent.bridges.twilio_media import TwilioWebhooks, call_parameters
from opusagent.bridges.twilio_rest import dial_twiml
from opusagent.call.events import CONNECTION_LOST, AgentAction, HangUp, SendDtmf, Transfer
from opusagent.call.hangup import aclose, tell_agent_hangup
from opusagent.call.stages import Agent, HistoryEntry, Speaker, TurnKind, UserTurn

log = logging.getLogger(__name__)

RELAY_PATH = "/twilio/relay"
RELAY_VOICE_PATH = "/twilio/relay/voice"
RELAY_ACTION_PATH = "/twilio/relay/action"
HANDOFF_FIELD = "HandoffData"
"""Form field of the `<Connect action>` request carrying our `end` message's `handoffData`
(named so by third-party implementations; not confirmed in Twilio's pages read)."""

# --- messages Twilio -> server -------------------------------------------------------------
# Fields the bridge does not need are optional; unknown extra fields are ignored.


class _Inbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class SetupMessage(_Inbound):
    """Sent as soon as the socket is open: who is calling, and the TwiML `<Parameter>`s."""

    type: Literal["setup"]
    session_id: str = Field(alias="sessionId")
    call_sid: str = Field(alias="callSid")
    account_sid: str | None = Field(None, alias="accountSid")
    parent_call_sid: str | None = Field(None, alias="parentCallSid")
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    forwarded_from: str | None = Field(None, alias="forwardedFrom")
    call_type: str | None = Field(None, alias="callType")
    caller_name: str | None = Field(None, alias="callerName")
    direction: str | None = None
    call_status: str | None = Field(None, alias="callStatus")
    custom_parameters: dict[str, str] = Field(default_factory=dict, alias="customParameters")


class PromptMessage(_Inbound):
    """What the caller said. With `partialPrompts`, interim prompts have `last: false`."""

    type: Literal["prompt"]
    voice_prompt: str = Field(alias="voicePrompt")
    lang: str | None = None
    last: bool = True
    """Absent only without `partialPrompts`, where every prompt is final (assumption)."""


class DtmfMessage(_Inbound):
    """A key the caller pressed (only with `dtmfDetection`)."""

    type: Literal["dtmf"]
    digit: str = Field(pattern=r"^[0-9*#A-Da-d]$")


class InterruptMessage(_Inbound):
    """The caller cut our speech short; `utteranceUntilInterrupt` is what they heard."""

    type: Literal["interrupt"]
    utterance_until_interrupt: str = Field("", alias="utteranceUntilInterrupt")
    duration_until_interrupt_ms: int | None = Field(None, alias="durationUntilInterruptMs")
    """A number, or a string of digits in one rendering of the docs: both are accepted."""


class ErrorMessage(_Inbound):
    """Twilio could not process something we sent (error 64107; the session goes on)."""

    type: Literal["error"]
    description: str = ""


class InfoMessage(_Inbound):
    """Debug events (`agentSpeaking`, `tokensPlayed`) with the `debug`/`events` setting."""

    type: Literal["info"]
    name: str | None = None
    value: Any = None


InboundMessage = Annotated[
    SetupMessage | PromptMessage | DtmfMessage | InterruptMessage | ErrorMessage | InfoMessage,
    Field(discriminator="type"),
]
_INBOUND: TypeAdapter[InboundMessage] = TypeAdapter(InboundMessage)
INBOUND_TYPES = frozenset({"setup", "prompt", "dtmf", "interrupt", "error", "info"})

# --- messages server -> Twilio -------------------------------------------------------------
# Only these five types with valid fields: anything else is error 64107, and ten unidentified
# messages in a row close the session (1007).


class _Outbound(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def wire(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class TextToken(_Outbound):
    """Text to speak, streamed as produced (tokens are not trimmed); `last` ends a talk cycle."""

    type: Literal["text"] = "text"
    token: str
    last: bool = False
    lang: str | None = None
    interruptible: bool | None = None
    preemptible: bool | None = None


class PlayMedia(_Outbound):
    """Play an audio file; `loop` 0 means 1000 times."""

    type: Literal["play"] = "play"
    source: str = Field(min_length=1)
    loop: int | None = Field(None, ge=0)
    preemptible: bool | None = None
    interruptible: bool | None = None


class SendDigits(_Outbound):
    """Play DTMF into the call, as `<Play digits>` would (`w` is a half-second pause)."""

    type: Literal["sendDigits"] = "sendDigits"
    digits: str = Field(pattern=r"^[0-9w#*]+$")


class SetLanguage(_Outbound):
    """Switch the language of later speech and/or recognition (at least one of the two)."""

    type: Literal["language"] = "language"
    tts_language: str | None = Field(None, alias="ttsLanguage")
    transcription_language: str | None = Field(None, alias="transcriptionLanguage")

    @model_validator(mode="after")
    def _one_language(self) -> SetLanguage:
        if self.tts_language is None and self.transcription_language is None:
            raise ValueError("ttsLanguage or transcriptionLanguage is required")
        return self


class EndSession(_Outbound):
    """End the session; Twilio goes on with the TwiML after `<Connect>` or its `action` URL,
    which receives `handoffData`."""

    type: Literal["end"] = "end"
    handoff_data: str | None = Field(None, alias="handoffData")


ServerMessage = Annotated[
    TextToken | PlayMedia | SendDigits | SetLanguage | EndSession, Field(discriminator="type")
]
SERVER_MESSAGES: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)
"""Every message ConversationRelay accepts from us (what a far end checks ours against)."""


class Handoff(BaseModel):
    """Our `handoffData` (a JSON string): why the session ended and, for a transfer, where to."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    reason_code: Literal["hangup", "transfer"] = Field(alias="reasonCode")
    reason: str = ""
    target: str | None = None


def parse_inbound(frame: str | bytes) -> InboundMessage:
    """One frame from Twilio as its message; `InvalidMessageError` if it is none of them."""
    if isinstance(frame, bytes):
        raise InvalidMessageError("binary frame; ConversationRelay uses text frames only")
    try:
        raw = json.loads(frame)
    except json.JSONDecodeError as exc:
        raise InvalidMessageError(f"not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise InvalidMessageError(f"not a JSON object: {frame[:80]!r}")
    kind = raw.get("type")
    if kind not in INBOUND_TYPES:
        raise InvalidMessageError(f"unknown type {kind!r}")
    try:
        return _INBOUND.validate_python(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidMessageError(f"{kind}: {problems}") from None


# --- the conversation ----------------------------------------------------------------------

Send = Callable[[str], Awaitable[None]]


@dataclass(slots=True)
class _Reply:
    """One agent reply: the tokens sent for it and where it sits in the history."""

    generation: int
    tokens: list[str] = field(default_factory=list)
    open_cycle: bool = False
    """Tokens went out since the last `last: true`."""
    done: bool = False
    history_index: int | None = None

    @property
    def text(self) -> str:
        return "".join(self.tokens)


class RelayConversation:
    """One ConversationRelay session: turns for the agent, its replies as `text` tokens, its
    actions as `sendDigits`/`end`, and a history of what the caller heard."""

    def __init__(self, agents: AgentFactory, send: Send) -> None:
        self._agents = agents
        self._send = send
        self._agent: Agent | None = None
        self._call_id = ""
        self._history: list[HistoryEntry] = []
        self._generation = 0
        self._reply: _Reply | None = None
        """The latest reply that sent text: being produced, or maybe still being spoken."""
        self._end_reason: str | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def history(self) -> tuple[HistoryEntry, ...]:
        return tuple(self._history)

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    async def handle(self, message: InboundMessage) -> None:
        """Take one message from Twilio."""
        if isinstance(message, SetupMessage):
            self._on_setup(message)
        elif self._agent is None:
            log.warning("ConversationRelay: ignoring %s before setup", message.type)
        elif isinstance(message, ErrorMessage):
            log.warning("call %s: ConversationRelay error: %s", self._call_id, message.description)
        elif isinstance(message, InfoMessage):
            log.debug(
                "call %s: ConversationRelay %s: %r", self._call_id, message.name, message.value
            )
        elif self._end_reason is not None:
            log.debug("call %s: ignoring %s after the end", self._call_id, message.type)
        elif isinstance(message, InterruptMessage):
            self._on_interrupt(message.utterance_until_interrupt)
        elif isinstance(message, PromptMessage):
            if message.last and message.voice_prompt.strip():
                await self._supersede()
                text = message.voice_prompt.strip()
                self._history.append(HistoryEntry(Speaker.CALLER, text))
                self._start_reply(TurnKind.SPEECH, text=text)
        else:
            await self._supersede()
            digit = message.digit.upper()
            self._history.append(HistoryEntry(Speaker.CALLER, "", dtmf=digit))
            self._start_reply(TurnKind.DTMF, dtmf=digit)

    async def aclose(self, reason: str = CONNECTION_LOST) -> None:
        """The session is over: the agent is told (its reply is never sent), work stops."""
        if self._closed:
            return
        self._closed = True
        self._end_reason = self._end_reason or reason
        reply = self._reply
        if reply is not None and not reply.done and reply.tokens:
            self._record_cut(reply, reply.text)
        self._generation += 1
        if self._agent is not None:
            await self._tell_agent_hangup(self._agent)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_setup(self, setup: SetupMessage) -> None:
        if self._agent is not None:
            log.warning("call %s: ignoring a second setup", self._call_id)
            return
        self._call_id = setup.call_sid
        self._agent = self._agents(setup.call_sid, setup.custom_parameters)
        self._start_reply(TurnKind.START)

    def _on_interrupt(self, heard: str) -> None:
        """Twilio stopped speaking the latest reply: keep only what the caller heard."""
        reply, self._reply = self._reply, None
        if reply is None:
            log.info("call %s: interrupt with no reply being spoken", self._call_id)
            return
        log.info(
            "call %s: the caller interrupted reply %d, having heard %r",
            self._call_id,
            reply.generation,
            heard,
        )
        if reply.history_index is None:
            self._generation += 1  # still being produced: the rest of it is dropped
        self._record_cut(reply, heard)

    async def _supersede(self) -> None:
        """A new turn starts: a reply still being produced stops where it is (the caller hears
        the tokens already sent) and its talk cycle is closed."""
        self._generation += 1
        reply, self._reply = self._reply, None
        if reply is not None and not reply.done:
            self._record_cut(reply, reply.text)
            await self._close_cycle(reply)

    def _record_cut(self, reply: _Reply, heard: str) -> None:
        entry = HistoryEntry(Speaker.AGENT, heard, interrupted=True, generated=reply.text)
        if reply.history_index is None:
            reply.history_index = len(self._history)
            self._history.append(entry)
        else:
            self._history[reply.history_index] = entry

    def _start_reply(self, kind: TurnKind, *, text: str = "", dtmf: str = "") -> None:
        self._generation += 1
        reply = _Reply(self._generation)
        turn = UserTurn(kind, text, dtmf, tuple(self._history), self._generation)
        task = asyncio.create_task(self._run_reply(turn, reply))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_reply(self, turn: UserTurn, reply: _Reply) -> None:
        assert self._agent is not None
        parts = self._agent.respond(turn)
        try:
            async for part in parts:
                if reply.generation != self._generation:
                    return
                if isinstance(part, str):
                    if part:
                        self._reply = reply
                        reply.tokens.append(part)
                        reply.open_cycle = True
                        await self._send(TextToken(token=part).wire())
                elif isinstance(part, HangUp | Transfer | SendDtmf):
                    await self._act(reply, part)
                    if self._end_reason is not None:
                        return
                # Other parts (status, listening hints) have no ConversationRelay message.
            if reply.generation == self._generation:
                await self._finish(reply)
        except Exception:
            log.exception("call %s: reply %d failed", self._call_id, reply.generation)
            if reply.generation == self._generation:
                await self._finish(reply)
        finally:
            await aclose(parts)

    async def _act(self, reply: _Reply, action: AgentAction) -> None:
        """Do `action` after the text before it: that talk cycle is closed first."""
        await self._close_cycle(reply)
        if isinstance(action, SendDtmf):
            try:
                digits = SendDigits(digits=action.digits)
            except ValidationError:
                log.warning(
                    "call %s: ConversationRelay cannot send DTMF %r (only 0-9, w, # and *)",
                    self._call_id,
                    action.digits,
                )
                return
            await self._send(digits.wire())
            return
        if isinstance(action, Transfer):
            handoff = Handoff(reason_code="transfer", reason=action.reason, target=action.target)
            self._end_reason = f"transfer: {action.target}"
        else:
            handoff = Handoff(reason_code="hangup", reason=action.reason)
            self._end_reason = f"agent_hangup: {action.reason}"
        await self._finish(reply)
        handoff_data = handoff.model_dump_json(by_alias=True, exclude_none=True)
        await self._send(EndSession(handoff_data=handoff_data).wire())

    async def _finish(self, reply: _Reply) -> None:
        """The reply is complete: its talk cycle ends and its text joins the history."""
        await self._close_cycle(reply)
        reply.done = True
        if not reply.tokens:
            return
        reply.history_index = len(self._history)
        self._history.append(HistoryEntry(Speaker.AGENT, reply.text, generated=reply.text))

    async def _close_cycle(self, reply: _Reply) -> None:
        if reply.open_cycle:
            reply.open_cycle = False
            await self._send(TextToken(token="", last=True).wire())

    async def _tell_agent_hangup(self, agent: Agent) -> None:
        """The agent learns the session ended (an FSA may record it); its reply is not sent."""
        await tell_agent_hangup(
            agent,
            call_id=self._call_id,
            reason=self._end_reason or "",
            history=self._history,
            generation=self._generation,
        )


async def serve_relay(websocket: WebSocket, agents: AgentFactory) -> RelayConversation:
    """Run one accepted ConversationRelay socket until it closes; returns its conversation."""
    lock = asyncio.Lock()

    async def send(frame: str) -> None:
        async with lock:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await websocket.send_text(frame)

    conversation = RelayConversation(agents, send)
    try:
        while (frame := await _receive(websocket)) is not None:
            try:
                message = parse_inbound(frame)
            except InvalidMessageError as exc:
                log.warning("%s: ignoring an invalid message: %s", RELAY_PATH, exc)
                continue
            try:
                await conversation.handle(message)
            except Exception:
                log.exception("%s: the session cannot go on after %s", RELAY_PATH, message.type)
                with contextlib.suppress(RuntimeError, OSError):
                    await websocket.close(code=INTERNAL_ERROR)
                break
    finally:
        await conversation.aclose()
    return conversation


async def _receive(websocket: WebSocket) -> str | bytes | None:
    """The next frame; None once the socket is closed."""
    try:
        message = await websocket.receive()
    except (WebSocketDisconnect, RuntimeError, OSError):
        return None
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    return str(text) if text is not None else bytes(message.get("bytes") or b"")


# --- TwiML and the webhooks ----------------------------------------------------------------


def relay_twiml(relay_url: str, action_url: str, parameters: dict[str, str]) -> str:
    """`<Response><Connect action=…><ConversationRelay url=…>` with one `<Parameter>` per item.

    DTMF detection is on (the agent takes key presses) and any caller input interrupts our
    speech; the agent greets on `setup`, so there is no `welcomeGreeting`.
    """
    relay = ConversationRelay(url=relay_url, dtmf_detection=True, interruptible="any")
    for name, value in parameters.items():
        relay.append(Parameter(name=name, value=value))
    connect = Connect(action=action_url)
    connect.append(relay)
    response = VoiceResponse()
    response.append(connect)
    return str(response.to_xml())


def after_session_twiml(handoff_data: str | None) -> str:
    """What the call does once its session ended: dial a transfer's target, else hang up."""
    handoff = None
    if handoff_data:
        try:
            handoff = Handoff.model_validate_json(handoff_data)
        except ValidationError:
            log.warning(
                "ConversationRelay ended with handoff data we did not write: %r", handoff_data
            )
    if handoff is not None and handoff.reason_code == "transfer" and handoff.target:
        return dial_twiml(handoff.target)
    response = VoiceResponse()
    response.hangup()
    return str(response.to_xml())


def mount_twilio_relay(
    app: FastAPI, agents: AgentFactory, *, auth_token: str | None, public_url: str | None
) -> None:
    """Serve `WS /twilio/relay`, `POST /twilio/relay/voice` and `POST /twilio/relay/action`.

    `agents` builds the agent of each session. With `auth_token`, requests without a valid
    `X-Twilio-Signature` are refused (HTTP 403). `public_url` is the scheme and host Twilio
    reaches this server at; unset, the request's Host header stands in.
    """
    webhooks = TwilioWebhooks(auth_token=auth_token, public_url=public_url)

    @app.websocket(RELAY_PATH)
    async def twilio_relay(websocket: WebSocket) -> None:
        if not await webhooks.accept(websocket):
            return
        conversation = await serve_relay(websocket, agents)
        log.info(
            "ConversationRelay session of call %s closed: %s",
            conversation.call_id,
            conversation.end_reason,
        )

    @app.post(RELAY_VOICE_PATH, summary="Twilio Voice URL: connect the call to ConversationRelay")
    async def twilio_relay_voice(request: Request) -> Response:
        form = await webhooks.form(request)
        twiml = relay_twiml(
            webhooks.origin.wss(request.url, RELAY_PATH),
            webhooks.origin.url(request.url, RELAY_ACTION_PATH),
            call_parameters(form, request.query_params),
        )
        return Response(twiml, media_type="text/xml")

    @app.post(RELAY_ACTION_PATH, summary="ConversationRelay ended: transfer or hang up the call")
    async def twilio_relay_action(request: Request) -> Response:
        form = await webhooks.form(request)
        return Response(after_session_twiml(form.get(HANDOFF_FIELD)), media_type="text/xml")
