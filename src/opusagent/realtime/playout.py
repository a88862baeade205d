"""The model's audio to the bridge at the pace it plays, and what the caller actually heard.

The model streams a reply faster than real time; the playout frames it (`Framer`), sends one
frame when the pacer allows (`Pacer`, a small lead over real time), follows the audio with marks
every `mark_every_ms` where the provider acknowledges marks, and keeps the reply's playback
ledger (`ReplyLedger`): acknowledged marks say how far playback got, or, without marks, the
pacer's clock does. On barge-in `cut()` clears the provider's buffer and returns how much of
the reply was heard, which is what the model's item is truncated to.

Marks are named `<call id>:<reply>:<ms>`: the milliseconds of the reply's audio before them.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from opusagent.audio.formats import AudioChunk
from opusagent.audio.framer import Framer
from opusagent.audio.pacer import Pacer
from opusagent.call.call import MARK_ACK_GRACE_S, SendOutput
from opusagent.call.events import (
    AgentAction,
    AgentAudio,
    AgentText,
    CallMedia,
    CallOutput,
    ClearPlayback,
    HangUp,
    Mark,
    ReplyAudioEnd,
)
from opusagent.call.playback import ReplyLedger

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Frame:
    reply: int
    data: bytes


@dataclass(slots=True)
class _MarkPoint:
    reply: int
    position_s: float
    final: bool


@dataclass(slots=True)
class _Action:
    reply: int
    action: AgentAction


@dataclass(slots=True)
class _End:
    reply: int


_Item = _Frame | _MarkPoint | _Action | _End


@dataclass(frozen=True, slots=True)
class Cut:
    """A reply cut off by the caller: its ledger and how many seconds of it were heard."""

    ledger: ReplyLedger
    heard_s: float


class Playout:
    """The one writer to the bridge for a realtime call: notices at once, audio paced."""

    def __init__(
        self,
        call_id: str,
        media: CallMedia,
        send: SendOutput,
        *,
        on_first_audio: Callable[[int, float], None],
        on_played: Callable[[int, str], None],
        on_hangup: Callable[[str], None],
        lead_ms: int = 60,
        mark_every_ms: int = 100,
    ) -> None:
        self._call_id = call_id
        self._media = media
        self._send = send
        self._on_first_audio = on_first_audio
        self._on_played = on_played
        self._on_hangup = on_hangup
        self._frame_s = media.frame_ms / 1000
        self._framer = Framer(media.outbound, media.frame_ms)
        self._pacer = Pacer(self._frame_s, max(lead_ms / 1000, self._frame_s))
        self._mark_every_s = mark_every_ms / 1000
        self._ledger: ReplyLedger | None = None
        self._since_mark_s = 0.0
        self._sent_s = 0.0
        self._first_sent = False
        self._pending: deque[_Item] = deque()
        self._controls: deque[CallOutput] = deque()
        self._marks: dict[str, _MarkPoint] = {}
        self._grace: asyncio.TimerHandle | None = None
        self._wake = asyncio.Event()
        self._closed = False

    @property
    def speaking(self) -> bool:
        """A reply is queued or playing."""
        return self._ledger is not None

    @property
    def reply(self) -> int | None:
        return None if self._ledger is None else self._ledger.generation

    def notify(self, output: CallOutput) -> None:
        """Send at once, ahead of paced audio (notices; a clear)."""
        self._controls.append(output)
        self._wake.set()

    def begin(self, reply: int) -> None:
        """Reply `reply` starts (a reply still playing must have been cut or finished)."""
        self._ledger = ReplyLedger(reply)
        self._since_mark_s = 0.0
        self._sent_s = 0.0
        self._first_sent = False

    def text(self, reply: int, text: str) -> None:
        """Words the audio pushed next speaks."""
        if self._ledger is not None and self._ledger.generation == reply and text:
            self._ledger.add_text(text)
            self.notify(AgentText(reply, text))

    def audio(self, reply: int, data: bytes) -> None:
        """Audio of `reply` in the bridge's outbound format, any length."""
        ledger = self._ledger
        if ledger is None or ledger.generation != reply:
            return
        self._queue_frames(ledger, self._framer.push(data))
        self._wake.set()

    def finish(self, reply: int, actions: list[AgentAction]) -> None:
        """No more audio for `reply`: its tail, final mark, end, then its actions, in order."""
        ledger = self._ledger
        if ledger is None or ledger.generation != reply:
            return
        last = self._framer.flush(pad=True)
        if last is not None:
            self._queue_frames(ledger, [last])
        if self._media.marks:
            self._pending.append(_MarkPoint(reply, ledger.audio_s, final=True))
        self._pending.append(_End(reply))
        self._pending.extend(_Action(reply, action) for action in actions)
        self._wake.set()

    def act(self, actions: list[AgentAction]) -> None:
        """Actions of a reply that has nothing to say."""
        self._pending.extend(_Action(-1, action) for action in actions)
        self._wake.set()

    def cut(self) -> Cut | None:
        """Barge-in: clear the provider's buffer, drop what is queued; None if nothing played."""
        ledger = self._ledger
        if ledger is None:
            return None
        heard = self.heard_s()
        now = _now()
        if self._pacer.buffered(now) > 0 or self._marks:
            self.notify(ClearPlayback(ledger.generation))
        self._pacer.clear(now)
        self._ledger = None
        self._pending = deque(i for i in self._pending if isinstance(i, _Action) and i.reply < 0)
        self._marks.clear()
        self._framer.reset()
        self._cancel_grace()
        self._wake.set()
        return Cut(ledger, heard)

    def heard_s(self) -> float:
        """Seconds of the current reply the caller has heard: the last acknowledged mark, or
        without marks the pacer's clock; never more than was sent."""
        ledger = self._ledger
        if ledger is None:
            return 0.0
        if self._media.marks:
            return min(ledger.acked_s, self._sent_s)
        return max(0.0, self._sent_s - self._pacer.buffered(_now()))

    def mark_acknowledged(self, name: str) -> None:
        point = self._marks.pop(name, None)
        ledger = self._ledger
        if point is None or ledger is None or point.reply != ledger.generation:
            return
        ledger.acked_s = max(ledger.acked_s, point.position_s)
        if point.final:
            self._played(point.reply)

    def close(self) -> None:
        self._closed = True
        self._cancel_grace()
        self._wake.set()

    async def run(self) -> None:
        """Send until closed: controls first, then frames (paced), marks, ends and actions;
        once closed, the controls still queued (a hang-up) go out before it stops."""
        while True:
            if self._controls:
                await self._send(self._controls.popleft())
                continue
            if self._closed:
                return
            item = self._pending[0] if self._pending else None
            if item is None:
                await self._sleep(None)
                continue
            wait = self._wait_for(item)
            if wait > 0:
                await self._sleep(wait)
                continue
            self._pending.popleft()
            await self._emit(item)

    # --- internals ---------------------------------------------------------------------

    def _queue_frames(self, ledger: ReplyLedger, frames: list[bytes]) -> None:
        for frame in frames:
            ledger.add_audio(self._frame_s)
            self._pending.append(_Frame(ledger.generation, frame))
            self._since_mark_s += self._frame_s
            if self._media.marks and self._since_mark_s + 1e-9 >= self._mark_every_s:
                self._since_mark_s = 0.0
                self._pending.append(_MarkPoint(ledger.generation, ledger.audio_s, final=False))

    def _wait_for(self, item: _Item) -> float:
        now = _now()
        if isinstance(item, _Frame):
            wait = self._pacer.delay_until_next(now)
        elif isinstance(item, _Action) or (isinstance(item, _End) and not self._media.marks):
            wait = self._pacer.buffered(now)
        else:
            wait = 0.0
        return wait if wait > 1e-6 else 0.0

    async def _emit(self, item: _Item) -> None:
        now = _now()
        if isinstance(item, _Frame):
            self._pacer.sent(now)
            self._sent_s += self._frame_s
            if not self._first_sent:
                self._first_sent = True
                self._on_first_audio(item.reply, now)
            await self._send(AgentAudio(AudioChunk(item.data, self._media.outbound), item.reply))
        elif isinstance(item, _MarkPoint):
            name = f"{self._call_id}:{item.reply}:{round(item.position_s * 1000)}"
            self._marks[name] = item
            await self._send(Mark(name))
        elif isinstance(item, _End):
            if self._media.marks:
                grace = self._pacer.buffered(now) + MARK_ACK_GRACE_S
                reply = item.reply
                self._cancel_grace()
                self._grace = asyncio.get_running_loop().call_later(
                    grace, lambda: self._played(reply)
                )
            else:
                self._played(item.reply)
            await self._send(ReplyAudioEnd(item.reply))
        else:
            if isinstance(item.action, HangUp):
                self._played(item.reply)
            await self._send(item.action)
            if isinstance(item.action, HangUp):
                self._on_hangup(f"agent_hangup: {item.action.reason}")

    def _played(self, reply: int) -> None:
        ledger = self._ledger
        if ledger is None or ledger.generation != reply:
            return
        self._cancel_grace()
        self._ledger = None
        self._on_played(reply, ledger.generated_text)

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None

    async def _sleep(self, seconds: float | None) -> None:
        """Wait for new work, or `seconds`; no fixed-period polling."""
        handle = None
        if seconds is not None:
            handle = asyncio.get_running_loop().call_later(seconds, self._wake.set)
        await self._wake.wait()
        self._wake.clear()
        if handle is not None:
            handle.cancel()


def _now() -> float:
    return asyncio.get_running_loop().time()
