"""The per-connection runner shared by every WebSocket bridge.

A bridge module knows one provider's messages and nothing else: it supplies a `Translator` that
turns each inbound frame (text or binary) into a `StartCall`, a `CallEvent` or nothing, and each
`CallOutput` into an outbound frame (or a request to close the socket). `run_session`
does the rest for every provider alike: it creates the one `Call` of the connection when the
stream starts, hands it events without blocking, sends its outputs, ends it when the socket
closes, and closes the socket when the call ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from opusagent.call.call import SendOutput
from opusagent.call.events import CONNECTION_LOST, CallerHungUp, CallEvent, CallMedia, CallOutput
from opusagent.call.stages import Agent

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008
"""WebSocket close code for a connection refused on policy (RFC 6455 §7.4.1)."""
UNSUPPORTED_DATA = 1003
"""WebSocket close code for a stream whose data we cannot take (RFC 6455 §7.4.1)."""
INTERNAL_ERROR = 1011
"""WebSocket close code for a server that cannot go on (RFC 6455 §7.4.1)."""
TRY_AGAIN_LATER = 1013
"""WebSocket close code for a server that cannot take the stream now (IANA WebSocket Close
Code Number Registry)."""


class BridgedCall(Protocol):
    """What a connection drives: the pipeline `Call`, or a speech-to-speech `RealtimeCall`."""

    @property
    def call_id(self) -> str: ...

    @property
    def end_reason(self) -> str | None: ...

    async def start(self) -> None: ...

    def handle(self, event: CallEvent) -> None: ...

    async def wait_closed(self) -> str: ...


class CallFactory(Protocol):
    """Builds the (not yet started) `Call` for one connection.

    `send` is the bridge's writer, to be passed to the Call; `params` are the provider's custom
    parameters for this call (e.g. Twilio's `<Parameter>`s).
    """

    def __call__(
        self, call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
    ) -> BridgedCall: ...


class AgentFactory(Protocol):
    """Builds the agent for one text-only conversation (no audio path, e.g. ConversationRelay)."""

    def __call__(self, call_id: str, params: Mapping[str, str]) -> Agent: ...


@dataclass(frozen=True, slots=True)
class StartCall:
    """The provider's stream has started: create the connection's call."""

    call_id: str
    media: CallMedia
    params: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CloseSocket:
    """Close the WebSocket (e.g. to hang up where closing is how a provider learns it)."""

    reason: str


class InvalidMessageError(ValueError):
    """An inbound message that cannot be understood; it is logged and ignored."""


class StreamRefusedError(Exception):
    """The stream cannot be served (e.g. an audio format we do not speak); the socket closes,
    after `reply` (the protocol's own refusal message) when there is one, with close `code`."""

    def __init__(
        self, message: str, *, reply: Frame | None = None, code: int = UNSUPPORTED_DATA
    ) -> None:
        super().__init__(message)
        self.reply = reply
        self.code = code


Frame = str | bytes
"""A WebSocket message: text (str) or binary (bytes)."""


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer the provider at once with `frame` (a handshake step or a protocol-required answer
    that is not a call event); allowed before the call starts."""

    frame: Frame


@dataclass(frozen=True, slots=True)
class Act:
    """Do something the protocol's socket cannot (e.g. a REST request that hangs up or transfers
    the call). Run as its own task so paced audio is not held up; a failure is logged."""

    what: str
    run: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Await:
    """Work the protocol needs done before the next frame is read (e.g. looking up a resumed
    conversation in the session store); what it returns is handled as `inbound`'s answer, and
    a `StreamRefusedError` it raises refuses the stream."""

    what: str
    run: Callable[[], Awaitable[Inbound | list[Inbound] | None]]


Inbound = StartCall | CallEvent | Reply | Await
Outbound = Frame | CloseSocket | Act


class Translator(Protocol):
    """One provider's protocol, for one connection."""

    def inbound(self, frame: Frame) -> Inbound | list[Inbound] | None:
        """The meaning of one frame, in order; None when it needs no action.

        Raises `InvalidMessageError` for a frame to ignore, `StreamRefusedError` for a stream
        to refuse.
        """
        ...

    def outbound(self, output: CallOutput) -> Outbound | list[Outbound] | None:
        """What to send or do for one output, in order; None when this provider has nothing."""
        ...


class _Session:
    def __init__(self, websocket: WebSocket, translator: Translator, calls: CallFactory) -> None:
        self._ws = websocket
        self._translator = translator
        self._calls = calls
        self._call: BridgedCall | None = None
        self._closing = False
        self._watcher: asyncio.Task[None] | None = None
        self._acts: set[asyncio.Task[None]] = set()
        self._write_lock = asyncio.Lock()

    async def run(self) -> str | None:
        try:
            while (frame := await self._receive()) is not None:
                if not await self._on_frame(frame):
                    break
        finally:
            call = self._call
            if call is not None:
                call.handle(CallerHungUp(CONNECTION_LOST))
                await call.wait_closed()
            if self._watcher is not None:
                await self._watcher
            if self._acts:
                await asyncio.gather(*self._acts)
            await self._close(reason="session ended")
        return call.end_reason if call is not None else None

    async def _receive(self) -> Frame | None:
        """The next frame; None once the socket is closed."""
        try:
            message = await self._ws.receive()
        except (WebSocketDisconnect, RuntimeError, OSError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        return bytes(message.get("bytes") or b"")

    async def _on_frame(self, frame: Frame) -> bool:
        """Handle one frame; False when the session must stop."""
        try:
            meaning = self._translator.inbound(frame)
        except InvalidMessageError as exc:
            log.warning("%s: ignoring an invalid message: %s", self._ws.url.path, exc)
            return True
        except StreamRefusedError as exc:
            await self._refuse(exc)
            return False
        return await self._on_meanings(meaning)

    async def _on_meanings(self, meaning: Inbound | list[Inbound] | None) -> bool:
        for item in meaning if isinstance(meaning, list) else (meaning,) if meaning else ():
            if not await self._on_inbound(item):
                return False
        return True

    async def _refuse(self, exc: StreamRefusedError) -> None:
        log.error("%s: refusing the stream: %s", self._ws.url.path, exc)
        if exc.reply is not None:
            await self._write(exc.reply)
        await self._close(code=exc.code, reason=str(exc))

    async def _on_inbound(self, meaning: Inbound) -> bool:
        if isinstance(meaning, Await):
            try:
                answer = await meaning.run()
            except StreamRefusedError as exc:
                await self._refuse(exc)
                return False
            return await self._on_meanings(answer)
        if isinstance(meaning, Reply):
            await self._write(meaning.frame)
        elif isinstance(meaning, StartCall):
            try:
                await self._start(meaning)
            except StreamRefusedError as exc:
                await self._refuse(exc)
                return False
            except Exception as exc:
                log.exception("call %s: could not be started", meaning.call_id)
                reason = f"call could not be started: {exc}"
                await self._close(code=INTERNAL_ERROR, reason=reason)
                return False
        elif self._call is None:
            log.warning("%s: ignoring %s before the stream started", self._ws.url.path, meaning)
        else:
            try:
                self._call.handle(meaning)
            except StreamRefusedError as exc:  # e.g. a flood of audio (`limits.MeteredCall`)
                await self._refuse(exc)
                return False
            except Exception:
                log.exception("call %s: failed to handle %s", self._call.call_id, meaning)
        return True

    async def _start(self, start: StartCall) -> None:
        if self._call is not None:
            log.warning("%s: ignoring a second start on one connection", self._ws.url.path)
            return
        call = self._calls(start.call_id, start.media, self._send, start.params)
        self._call = call
        await call.start()
        self._watcher = asyncio.create_task(self._close_when_ended(call))

    async def _close_when_ended(self, call: BridgedCall) -> None:
        reason = await call.wait_closed()
        await self._close(reason=f"call ended: {reason}")

    async def _send(self, output: CallOutput) -> None:
        """The Call's writer (called only from its sender task)."""
        result = self._translator.outbound(output)
        for item in result if isinstance(result, list) else (result,) if result else ():
            if isinstance(item, CloseSocket):
                await self._close(reason=item.reason)
            elif isinstance(item, Act):
                self._start_act(item)
            else:
                await self._write(item)

    def _start_act(self, act: Act) -> None:
        async def run() -> None:
            try:
                await act.run()
            except Exception:
                log.exception("%s: %s failed", self._ws.url.path, act.what)

        task = asyncio.create_task(run())
        self._acts.add(task)
        task.add_done_callback(self._acts.discard)

    async def _write(self, frame: Frame) -> None:
        """Send one frame; the receive loop and the Call's sender both write, one at a time."""
        async with self._write_lock:
            if self._closing:
                return
            try:
                if isinstance(frame, bytes):
                    await self._ws.send_bytes(frame)
                else:
                    await self._ws.send_text(frame)
            except (WebSocketDisconnect, RuntimeError, OSError):
                # The receive loop sees the closed socket too and ends the call from there.
                self._closing = True

    async def _close(self, *, code: int = 1000, reason: str) -> None:
        if self._closing:
            return
        self._closing = True
        if self._ws.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self._ws.close(code=code, reason=_close_reason(reason))


async def run_session(
    websocket: WebSocket, translator: Translator, calls: CallFactory
) -> str | None:
    """Serve one accepted WebSocket until both the socket and its call are done.

    Returns the call's end reason, or None when the stream never started a call.
    """
    return await _Session(websocket, translator, calls).run()


def _close_reason(reason: str) -> str:
    """`reason` cut to the 123 bytes of UTF-8 a close frame allows (RFC 6455 §5.5.1)."""
    return reason.encode()[:123].decode(errors="ignore")
