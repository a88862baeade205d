"""Twilio's side of a ConversationRelay session: text in, text out, for tests and
`opusagent dial relay`.

Facts from https://www.twilio.com/docs/voice/conversationrelay/websocket-messages (CATALOG §2):

- Twilio opens the socket (the upgrade signed with `X-Twilio-Signature`, as for webhooks) and
  sends `setup` at once; then `prompt` for what the caller said (`last: false` for interim
  results with `partialPrompts`), `dtmf` for a key, `interrupt` with `utteranceUntilInterrupt`
  and `durationUntilInterruptMs` when the caller cut the speech short, and `error` for a message
  it could not process. When the caller hangs up, the socket closes.
- The server may send only `text` (`token`, `last`, ...), `play`, `sendDigits`, `language` and
  `end` (`handoffData`, a string), each with valid fields; anything else is error 64107 and is
  not processed. This far end checks every message against those rules, reports a bad one as
  Twilio does (an `error` message) and records it in the transcript.
- A talk cycle is the text tokens up to one with `last: true`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ValidationError
from twilio.request_validator import RequestValidator
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from opusagent.bridges.twilio_media import SIGNATURE_HEADER
from opusagent.bridges.twilio_relay import (
    SERVER_MESSAGES,
    EndSession,
    SendDigits,
    ServerMessage,
    TextToken,
)

REPLY_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class RelayLine:
    """One line of the conversation, with times in seconds from when the socket opened."""

    speaker: Literal["caller", "agent"]
    text: str
    at_s: float
    """Caller: when it was sent. Agent: when its first token arrived."""
    end_s: float
    """Agent: when its talk cycle ended (or was interrupted). Caller: `at_s`."""
    dtmf: str = ""
    latency_s: float | None = None
    """Agent: from the caller's input before it (or `setup`) to its first token."""
    interrupted: bool = False
    """Agent: the caller interrupted it; `text` is what had arrived by then."""


@dataclass(frozen=True, slots=True)
class RelayTranscript:
    """A whole session as Twilio saw it."""

    lines: tuple[RelayLine, ...]
    digits: tuple[str, ...]
    """What `sendDigits` asked to play, in order."""
    handoff_data: str | None
    """From the server's `end`, if it sent one."""
    ended_by_server: bool
    errors: tuple[str, ...]
    """Server messages ConversationRelay would have refused (error 64107)."""

    def agent_lines(self) -> list[str]:
        return [line.text for line in self.lines if line.speaker == "agent"]


@dataclass(slots=True)
class _Cycle:
    started_s: float
    tokens: list[str] = field(default_factory=list)
    latency_s: float | None = None


class RelayClient:
    """One ConversationRelay session from Twilio's side, over an open WebSocket."""

    def __init__(self, ws: ClientConnection, *, call_sid: str | None = None) -> None:
        self.ws = ws
        self.call_sid = call_sid or f"CA{uuid.uuid4().hex}"
        self.session_id = f"VX{uuid.uuid4().hex}"
        self.received: list[tuple[float, ServerMessage]] = []
        """Every valid server message, with its arrival time."""
        self.errors: list[str] = []
        self.digits: list[str] = []
        self.handoff_data: str | None = None
        self.ended_by_server = False
        self.closed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self._lines: list[RelayLine] = []
        self._cycle: _Cycle | None = None
        self._input_at: float | None = None
        self._replies: asyncio.Queue[RelayLine | None] = asyncio.Queue()
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @property
    def lines(self) -> tuple[RelayLine, ...]:
        return tuple(self._lines)

    def now(self) -> float:
        return self._loop.time() - self._started

    def texts(self) -> list[TextToken]:
        return [m for _, m in self.received if isinstance(m, TextToken)]

    async def setup(self, parameters: Mapping[str, str] | None = None) -> None:
        await self._send(
            {
                "type": "setup",
                "sessionId": self.session_id,
                "accountSid": "AC" + "0" * 32,
                "parentCallSid": "",
                "callSid": self.call_sid,
                "from": "+15550100",
                "to": "+15550199",
                "forwardedFrom": "",
                "callType": "PSTN",
                "callerName": "",
                "direction": "inbound",
                "callStatus": "RINGING",
                "customParameters": dict(parameters or {}),
            }
        )
        self._input_at = self.now()

    async def prompt(self, text: str, *, last: bool = True, lang: str = "en-US") -> None:
        await self._send({"type": "prompt", "voicePrompt": text, "lang": lang, "last": last})
        if last:
            self._caller(text)

    async def dtmf(self, digit: str) -> None:
        await self._send({"type": "dtmf", "digit": digit})
        self._caller("", dtmf=digit)

    async def interrupt(self, heard: str, duration_ms: int) -> None:
        """The caller spoke over the agent: the talk cycle being spoken stops here."""
        await self._send(
            {
                "type": "interrupt",
                "utteranceUntilInterrupt": heard,
                "durationUntilInterruptMs": duration_ms,
            }
        )
        cycle, self._cycle = self._cycle, None
        if cycle is not None:
            self._end_cycle(cycle, interrupted=True)

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def reply(self, within_s: float = REPLY_TIMEOUT_S) -> RelayLine | None:
        """The next completed agent talk cycle; None once the session is over.

        Raises `TimeoutError` when none completes within `within_s` seconds.
        """
        if self.closed.is_set() and self._replies.empty():
            return None
        async with asyncio.timeout(within_s):
            return await self._replies.get()

    async def wait_for(self, done: Callable[[], bool], within_s: float) -> None:
        """Wait until `done()` holds, checked as each server message arrives and at the close.

        Raises `TimeoutError` after `within_s` seconds.
        """
        async with asyncio.timeout(within_s), self._changed:
            await self._changed.wait_for(lambda: done() or self.closed.is_set())

    async def hang_up(self) -> None:
        """The caller hangs up: the socket closes."""
        await self.ws.close()
        await self._reader

    def transcript(self) -> RelayTranscript:
        return RelayTranscript(
            lines=self.lines,
            digits=tuple(self.digits),
            handoff_data=self.handoff_data,
            ended_by_server=self.ended_by_server,
            errors=tuple(self.errors),
        )

    def _caller(self, text: str, *, dtmf: str = "") -> None:
        at = self.now()
        self._input_at = at
        self._lines.append(RelayLine("caller", text, at, at, dtmf=dtmf))

    async def _send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def _read(self) -> None:
        try:
            async for frame in self.ws:
                await self._on_frame(frame)
        except ConnectionClosed:
            pass
        finally:
            self.closed.set()
            self._replies.put_nowait(None)
            await self._notify()

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _on_frame(self, frame: str | bytes) -> None:
        try:
            if isinstance(frame, bytes):
                raise ValueError("binary frame")
            message = SERVER_MESSAGES.validate_json(frame)
        except (ValidationError, ValueError) as exc:
            self.errors.append(f"{frame!r}: {exc}")
            with contextlib.suppress(ConnectionClosed):
                text = frame if isinstance(frame, str) else repr(frame)
                await self._send(
                    {"type": "error", "description": f"Invalid message received: {text}"}
                )
            return
        at = self.now()
        self.received.append((at, message))
        await self._notify()
        if isinstance(message, TextToken):
            self._on_token(message, at)
        elif isinstance(message, SendDigits):
            self.digits.append(message.digits)
        elif isinstance(message, EndSession):
            self.ended_by_server = True
            self.handoff_data = message.handoff_data
            with contextlib.suppress(ConnectionClosed):
                await self.ws.close()

    def _on_token(self, token: TextToken, at: float) -> None:
        cycle = self._cycle
        if cycle is None:
            latency = None if self._input_at is None else at - self._input_at
            cycle = self._cycle = _Cycle(at, latency_s=latency)
            self._input_at = None
        cycle.tokens.append(token.token)
        if token.last:
            self._cycle = None
            self._end_cycle(cycle, interrupted=False)

    def _end_cycle(self, cycle: _Cycle, *, interrupted: bool) -> None:
        line = RelayLine(
            "agent",
            "".join(cycle.tokens),
            cycle.started_s,
            self.now(),
            latency_s=cycle.latency_s,
            interrupted=interrupted,
        )
        self._lines.append(line)
        if not interrupted:
            self._replies.put_nowait(line)


def signature_headers(url: str, auth_token: str) -> dict[str, str]:
    """`X-Twilio-Signature` for a session at `url`, signed as Twilio signs its `wss://` URL."""
    parts = urlsplit(url)
    signed = parts._replace(scheme="wss").geturl()
    return {SIGNATURE_HEADER: RequestValidator(auth_token).compute_signature(signed, {})}


@asynccontextmanager
async def relay_session(
    url: str, *, headers: Mapping[str, str] | None = None, call_sid: str | None = None
) -> AsyncIterator[RelayClient]:
    """A connected `RelayClient`; leaving the block hangs up (the socket closes)."""
    async with connect(url, additional_headers=dict(headers or {})) as ws:
        client = RelayClient(ws, call_sid=call_sid)
        try:
            yield client
        finally:
            await client.hang_up()


async def converse(
    url: str,
    utterances: Sequence[str],
    *,
    dtmf: str | None = None,
    headers: Mapping[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
    reply_timeout_s: float = REPLY_TIMEOUT_S,
) -> RelayTranscript:
    """A whole session: `setup` (with `parameters`), then each utterance as a final prompt and
    then each key of `dtmf`, every input waiting for the agent's reply (or `reply_timeout_s`)
    first; hangs up after the last reply, unless the server ended the session before."""
    async with relay_session(url, headers=headers) as client:
        await client.setup(parameters)
        inputs: list[tuple[Callable[[str], Awaitable[None]], str]] = [
            *((client.prompt, text) for text in utterances),
            *((client.dtmf, digit) for digit in dtmf or ""),
        ]
        with contextlib.suppress(TimeoutError):
            await client.reply(reply_timeout_s)
        for send, value in inputs:
            if client.closed.is_set() or client.ended_by_server:
                break
            try:
                await send(value)
            except ConnectionClosed:
                break  # the server ended the session while this input was on its way
            with contextlib.suppress(TimeoutError):
                await client.reply(reply_timeout_s)
    return client.transcript()
