"""The caller's end of a simulated call: a phone line over a real bridge (audio mode), or the
agent's web chat (text mode). Both record the call as the caller lived it, with timings.

`listen()` returns once the agent has finished its turn: in audio, when its audio has stopped
for `QUIET_S` (or when an interrupting persona cuts in), transcribed by the caller's own
recogniser; in text, the reply to the caller's last message. Nothing heard within the persona's
patience is an empty `Heard`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from opusagent.bridges.dial import RECORD_RATE, DialResult, DialSession
from opusagent.simulate.personas import Persona
from opusagent.simulate.voice import CallerVoice
from opusagent.voice.offline import resample

QUIET_S = 1.0
"""Agent silence that ends its turn (longer than the pauses between its sentences)."""
PAUSE_S = 0.3
"""A pause in the agent's audio after which what it said so far is transcribed."""
MIN_PIECE_S = 0.8
INTERRUPT_AFTER_S = 1.5
"""An interrupting persona cuts in once the agent has talked this long."""
BACKCHANNEL_AFTER_S = 1.5
BACKCHANNEL_EVERY_S = 5.0
BACKCHANNEL = "mhm"
POLL_S = 0.05
REPLY_TIMEOUT_S = 30.0
"""How long a chat message may wait for its reply."""

EventKind = Literal["speech", "keys", "backchannel", "silence", "hang_up", "error"]


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened on the call, as the caller lived it (seconds from its start)."""

    at_s: float
    end_s: float
    who: Literal["agent", "caller"]
    kind: EventKind
    text: str = ""
    note: str = ""
    latency_s: float | None = None
    """Agent: from the end of the caller's last input to the agent's first word or audio."""


@dataclass(frozen=True, slots=True)
class Heard:
    text: str
    nothing: bool = False
    """The agent said nothing within the caller's patience."""


class Line(Protocol):
    call_id: str
    events: list[Event]

    @property
    def ended(self) -> bool: ...

    async def listen(self) -> Heard: ...

    async def say(self, text: str, note: str) -> None: ...

    async def keys(self, digits: str, note: str) -> None: ...

    async def silence(self, note: str) -> None: ...

    async def hang_up(self, note: str) -> None: ...


# --- text: the web chat ----------------------------------------------------------------------


class ChatLine:
    """Text mode over the web chat (`/chat`): the agent's replies are its words, exactly.

    The chat has no keypad: keyed digits are typed (digits only), and DTMF-only transitions
    cannot fire; it has no clock either: a silent caller is simply never answered.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._loop = asyncio.get_running_loop()
        self._started = self._loop.time()
        self.call_id = ""
        self.events: list[Event] = []
        self._pending: dict[str, Any] | None = None
        self._ended = False

    @classmethod
    async def open(cls, url: str, agent: str | None) -> ChatLine:
        ws = await connect(url, open_timeout=10.0)
        line = cls(ws)
        await line._send({"type": "start", "agent": agent})
        return line

    @property
    def ended(self) -> bool:
        return self._ended

    def now(self) -> float:
        return self._loop.time() - self._started

    async def listen(self) -> Heard:
        reply, self._pending = self._pending, None
        if reply is None:
            return Heard("", nothing=True)
        return Heard(str(reply.get("text", "")))

    async def say(self, text: str, note: str) -> None:
        await self._input("speech", text, text, note)

    async def keys(self, digits: str, note: str) -> None:
        typed = re.sub(r"\D", "", digits)
        await self._input("keys", digits, typed, f"{note}; typed (the chat has no keypad)")

    async def silence(self, note: str) -> None:
        now = self.now()
        self.events.append(Event(now, now, "caller", "silence", "", note))

    async def hang_up(self, note: str) -> None:
        now = self.now()
        self.events.append(Event(now, now, "caller", "hang_up", "", note))
        await self.close()

    async def close(self) -> None:
        self._ended = True
        await self._ws.close()

    async def _input(self, kind: EventKind, shown: str, text: str, note: str) -> None:
        now = self.now()
        self.events.append(Event(now, now, "caller", kind, shown, note))
        if text:
            await self._send({"type": "text", "text": text})

    async def _send(self, message: Mapping[str, Any]) -> None:
        sent = self.now()
        try:
            await self._ws.send(json.dumps(message))
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                reply = json.loads(await self._ws.recv())
        except (ConnectionClosed, TimeoutError) as exc:
            self._ended = True
            now = self.now()
            self.events.append(Event(now, now, "agent", "error", f"no reply: {exc!r}"))
            return
        now = self.now()
        if reply.get("type") == "error":
            self.events.append(Event(now, now, "agent", "error", str(reply.get("message"))))
            return
        self.call_id = str(reply.get("callId", self.call_id))
        self._pending = reply
        actions = ", ".join(str(a) for a in reply.get("actions", []))
        self.events.append(
            Event(sent, now, "agent", "speech", str(reply.get("text", "")), actions, now - sent)
        )
        if reply.get("ended"):
            await self.close()


# --- audio: a phone line over a bridge ------------------------------------------------------


@dataclass
class _Listening:
    floor: float
    deadline: float
    started: float | None = None
    last_backchannel: float = -1e9
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    heard_to: float = 0.0
    """Agent audio up to here is being transcribed already (by `pieces`)."""
    pieces: list[asyncio.Task[str]] = field(default_factory=list)


class PhoneLine:
    """Audio mode: a call placed by the dialler over a provider's bridge. The caller speaks
    through its synthesiser and the telephone codec, and hears the agent through its own
    recogniser; an interrupting persona talks over the agent, a backchanneling one says "mhm"
    while the agent talks."""

    def __init__(self, call: DialSession, call_id: str, voice: CallerVoice, persona: Persona):
        self._call = call
        self.call_id = call_id
        self._voice = voice
        self._persona = persona
        self.events: list[Event] = []
        self._heard_until = 0.0
        self._last_input_end: float | None = None

    @property
    def ended(self) -> bool:
        return self._call.ended

    async def listen(self) -> Heard:
        call, persona = self._call, self._persona
        floor = max(self._heard_until, self._last_input_end or 0.0)
        state = _Listening(floor=floor, deadline=call.now + persona.patience_s)
        cut = False
        try:
            while not call.ended:
                now = call.now
                if state.started is None:
                    if call.agent_audio_until > state.floor:
                        state.started = state.heard_to = max(state.floor, now - POLL_S)
                    elif now >= state.deadline:
                        return Heard("", nothing=True)
                elif call.agent_audio_until > now:
                    talked = now - state.started
                    if persona.tendencies.interrupts and talked >= INTERRUPT_AFTER_S:
                        cut = True
                        break
                    if persona.tendencies.backchannels and talked >= BACKCHANNEL_AFTER_S:
                        self._backchannel(state, now)
                elif now - call.agent_audio_until >= QUIET_S:
                    break
                elif now - call.agent_audio_until >= PAUSE_S:
                    self._transcribe_so_far(state, call.agent_audio_until)
                await asyncio.sleep(POLL_S)
            return await self._heard(state, cut)
        finally:
            for piece in state.pieces:
                piece.cancel()
            await asyncio.gather(*state.tasks, *state.pieces, return_exceptions=True)

    async def say(self, text: str, note: str) -> None:
        samples, rate = await self._voice.speak(text, self._persona)
        start = self._call.now
        await self._call.play(samples, rate)
        self._input("speech", start, text, note)

    async def keys(self, digits: str, note: str) -> None:
        start = self._call.now
        await self._call.dtmf(digits)
        self._input("keys", start, digits, note)

    async def silence(self, note: str) -> None:
        now = self._call.now
        self.events.append(Event(now, now, "caller", "silence", "", note))

    async def hang_up(self, note: str) -> None:
        now = self._call.now
        self.events.append(Event(now, now, "caller", "hang_up", "", note))
        await self._call.hangup()

    def _input(self, kind: EventKind, start: float, text: str, note: str) -> None:
        end = self._call.now
        self._last_input_end = end
        self.events.append(Event(start, end, "caller", kind, text, note))

    def _backchannel(self, state: _Listening, now: float) -> None:
        if now - state.last_backchannel < BACKCHANNEL_EVERY_S or state.tasks:
            return
        state.last_backchannel = now

        async def say_mhm() -> None:
            samples, rate = await self._voice.speak(BACKCHANNEL, self._persona)
            start = self._call.now
            await self._call.play(samples, rate)
            end = self._call.now
            self.events.append(Event(start, end, "caller", "backchannel", BACKCHANNEL))

        task = asyncio.create_task(say_mhm())
        state.tasks.add(task)
        task.add_done_callback(state.tasks.discard)

    def _transcribe_so_far(self, state: _Listening, until: float) -> None:
        """Transcribe the agent's audio up to a pause now, while it may go on talking, so that
        little is left to recognise once it has finished."""
        if until - state.heard_to < MIN_PIECE_S:
            return
        audio = self._call.result().agent_audio
        piece = audio[round(state.heard_to * RECORD_RATE) : round(until * RECORD_RATE)]
        state.heard_to = until
        state.pieces.append(asyncio.create_task(self._voice.transcribe(piece, RECORD_RATE)))

    async def _heard(self, state: _Listening, cut: bool) -> Heard:
        end = self._call.now
        self._heard_until = end
        if state.started is None:
            return Heard("", nothing=True)
        self._transcribe_so_far(state, end)
        texts = await asyncio.gather(*state.pieces)
        text = " ".join(t for t in texts if t)
        latency = None
        if self._last_input_end is not None:
            latency = max(0.0, state.started - self._last_input_end)
            self._last_input_end = None
        note = "the caller cut in" if cut else ""
        self.events.append(Event(state.started, end, "agent", "speech", text, note, latency))
        return Heard(text)


def stereo(result: DialResult, rate: int = 8000) -> np.ndarray[Any, np.dtype[np.int16]]:
    """The call as the caller lived it: caller left, agent right, at `rate` (int16, n x 2)."""
    caller = resample(result.caller_audio, RECORD_RATE, rate)
    agent = resample(result.agent_audio, RECORD_RATE, rate)
    both = np.zeros((max(len(caller), len(agent)), 2), dtype=np.int16)
    both[: len(caller), 0] = caller
    both[: len(agent), 1] = agent
    return both


async def close_quietly(line: Line) -> None:
    """Leave the call if it is still up (the runner's clean-up, also on Ctrl-C)."""
    if not line.ended:
        with contextlib.suppress(Exception):
            await line.hang_up("the run stopped")
