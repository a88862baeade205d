"""Place a call into a running server exactly as a provider would (`opusagent dial`, load tests).

The dialler is the same for every provider; a `FarEnd` (`opusagent.bridges.farend`) supplies the
provider's messages. API::

    async with dial(far_end, "ws://127.0.0.1:8000/twilio/media") as call:
        await call.wait_until_quiet()          # the greeting has played
        await call.play(samples, 16000)        # speak (returns when the last frame is sent)
        await call.wait_until_quiet()          # the agent's answer has played
        await call.dtmf("12#")
    result = call.result()                     # DialResult: audio, turns, latencies, ...

`dial(far_end, url, *, open_timeout=10.0, record=True)` connects with `far_end.headers()`,
sends `far_end.opening()`, waits for `Ready` when `far_end.waits_for_ready`, and yields a
`DialSession`; with `record=False` it keeps no audio and no received frames, only the turns
and counts (a load test's thousands of calls). Leaving the block hangs up if the call is still
up and closes the socket; an invalid message from the server (the far end's `receive` raised)
ends the call and is raised there as `DialError`. A refused or unreachable server raises
`DialError` on entry.

`DialSession`:

- A sender task sends one caller frame every `far_end.frame_ms` for the whole call, on a
  drift-free schedule of the monotonic loop clock (frame n goes at start + n * frame, as a
  provider sends each frame once its audio was captured), silence when nothing is queued.
  Queued speech goes through one streaming `AudioConverter` per call into
  `far_end.audio_format`; the last partial frame of each `play()` is padded with silence.
- `play(samples, rate)` queues int16 mono speech and returns once its last frame is sent;
  `silence(seconds)` queues silence the same way; `dtmf(digits, gap_s)` sends key presses.
- A reader task applies `far_end.receive()`: `Play` audio plays on a real-time playout clock
  (from its arrival, or when the audio before it ends); a `PlayMarker` is acknowledged with
  `far_end.marker_played()` when the playout clock passes it; `Clear` drops the queued audio
  and acknowledges pending markers at once; `Send` is sent at once; `Heard` is recorded;
  `Ended` ends the call and closes the socket.
- `wait_until_quiet(quiet_s, timeout)` is true once neither side has made a sound for
  `quiet_s` (no agent audio playing, no caller speech or key press).
- `hangup()` sends `far_end.hangup()` and closes; `drop()` closes without them.
- `received` (every frame with its time), `heard`, `end_reason`, `ended`, `wait_ended()`.
- `result()` gives a `DialResult`. Times are seconds from the moment the socket opened.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from opusagent.audio.codecs import decode, silence
from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.audio.framer import Framer
from opusagent.audio.resample import AudioConverter
from opusagent.bridges.farend import (
    Clear,
    Ended,
    FarEnd,
    Heard,
    Play,
    PlayMarker,
    Reaction,
    Ready,
    Send,
)
from opusagent.bridges.session import Frame
from opusagent.call.stages import Samples
from opusagent.voice.offline import read_wav, resample, write_wav

RECORD_RATE = 16000
"""Sample rate of the audio in a `DialResult`."""
CLOSE_TIMEOUT_S = 3.0
"""How long a closing handshake may take before the socket is dropped."""


class DialError(Exception):
    """The call could not be placed, or the server broke its protocol."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status when the server refused the WebSocket upgrade."""


@dataclass(frozen=True, slots=True)
class Turn:
    """One thing the caller said and how long the agent took to answer it."""

    caller_start: float
    """Where the caller's speech (`play()`) starts on the call timeline."""
    caller_end: float
    """When its last frame was sent."""
    agent_start: float | None
    """When the first agent audio arriving after it came in; None if none came."""

    @property
    def latency(self) -> float | None:
        return None if self.agent_start is None else self.agent_start - self.caller_end


@dataclass(frozen=True, slots=True)
class DialResult:
    """What happened on one call. Audio is mono PCM16 at `RECORD_RATE` on the call timeline."""

    agent_audio: Samples
    """The agent's audio as the caller heard it: cut where the server cleared it."""
    caller_audio: Samples
    """Every frame the caller sent, speech and silence."""
    agent_spans: list[tuple[float, float]]
    """(start, end) of each stretch of agent audio played back to back."""
    heard: list[tuple[float, Heard]]
    turns: list[Turn]
    dtmf: list[tuple[float, str]]
    """Each key the caller pressed, with when."""
    end_reason: str
    received_count: int

    @property
    def duration(self) -> float:
        return max(len(self.agent_audio), len(self.caller_audio)) / RECORD_RATE

    def agent_utterances(self, gap_s: float = 0.3) -> list[tuple[float, float]]:
        """Agent spans joined across pauses shorter than `gap_s`."""
        joined: list[tuple[float, float]] = []
        for start, end in self.agent_spans:
            if joined and start - joined[-1][1] < gap_s:
                joined[-1] = (joined[-1][0], end)
            else:
                joined.append((start, end))
        return joined

    def save_wav(self, path: Path) -> None:
        """The agent's audio as heard: a mono 16-bit WAV at `RECORD_RATE`."""
        write_wav(path, self.agent_audio, RECORD_RATE)


@dataclass(slots=True)
class _Piece:
    start: float
    data: bytearray
    end: float


class _Track:
    """Audio in one format placed on the call timeline, as pieces played back to back."""

    def __init__(self, fmt: AudioFormat) -> None:
        self._format = fmt
        self._pieces: list[_Piece] = []

    def add(self, start: float, data: bytes) -> None:
        """Place `data` from `start`; audio starting where the last piece ends extends it."""
        end = start + self._format.duration(data)
        if self._pieces and abs(self._pieces[-1].end - start) < 1e-6:
            last = self._pieces[-1]
            last.data += data
            last.end = last.start + self._format.duration(last.data)
        else:
            self._pieces.append(_Piece(start, bytearray(data), end))

    def cut(self, at: float) -> None:
        """Drop everything after `at`."""
        while self._pieces and self._pieces[-1].start >= at:
            self._pieces.pop()
        if self._pieces and self._pieces[-1].end > at:
            last = self._pieces[-1]
            del last.data[self._format.bytes_for(at - last.start) :]
            last.end = at

    def spans(self) -> list[tuple[float, float]]:
        return [(piece.start, piece.end) for piece in self._pieces]

    def samples(self) -> Samples:
        """The whole track at `RECORD_RATE` from time 0, silence between pieces."""
        rate = self._format.sample_rate
        placed = [
            (round(p.start * rate), decode(p.data, self._format.encoding)) for p in self._pieces
        ]
        timeline = np.zeros(max((at + len(s) for at, s in placed), default=0), dtype=np.int16)
        for at, samples in placed:
            timeline[at : at + len(samples)] = samples
        return resample(timeline, rate, RECORD_RATE) if rate != RECORD_RATE else timeline


class DialSession:
    """One call placed by `dial`; see the module docstring."""

    def __init__(self, far_end: FarEnd, ws: ClientConnection, *, record: bool = True) -> None:
        self._far = far_end
        self._ws = ws
        self._record = record
        self._received_count = 0
        self._loop = asyncio.get_running_loop()
        self.started_at = self._loop.time()
        """Loop time of the call's time 0 (the socket opened)."""
        fmt = far_end.audio_format
        self._frame_s = far_end.frame_ms / 1000
        self._framer = Framer(fmt, far_end.frame_ms)
        self._silence = silence(fmt, self._frame_s)
        self._converter: AudioConverter | None = None
        self._queue: deque[bytes] = deque()
        self._queued = 0
        """Frames ever queued."""
        self._sent = 0
        """Queued frames sent so far."""
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._caller = _Track(fmt)
        self._agent = _Track(fmt)
        self._play_end = self.started_at
        self._caller_busy = 0
        self._caller_quiet_since = self.started_at
        self._markers: dict[str, asyncio.TimerHandle] = {}
        self._turns: list[Turn] = []
        self._awaiting: list[tuple[float, float]] = []
        """(start, end) of the caller's turns no agent audio has answered yet."""
        self._dtmf: list[tuple[float, str]] = []
        self.received: list[tuple[float, Frame]] = []
        self.heard: list[tuple[float, Heard]] = []
        self._ready = asyncio.Event()
        self._ended = asyncio.Event()
        self._end_reason: str | None = None
        self._error: Exception | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self._reader = asyncio.create_task(self._run_reader())
        self._sender = asyncio.create_task(self._run_sender())

    # --- state ----------------------------------------------------------------------------

    @property
    def far_end(self) -> FarEnd:
        return self._far

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def end_reason(self) -> str | None:
        return self._end_reason

    @property
    def now(self) -> float:
        """Seconds since the call's time 0."""
        return self._loop.time() - self.started_at

    @property
    def agent_audio_until(self) -> float:
        """Where the agent audio received so far ends playing, in seconds on the call's
        timeline (past `now` while the agent is heard talking)."""
        return self._play_end - self.started_at

    async def wait_ended(self) -> str:
        """The end reason, once the call is over."""
        await self._ended.wait()
        return self._end_reason or ""

    # --- the caller -----------------------------------------------------------------------

    async def play(self, samples: Samples, rate: int) -> None:
        """Speak int16 mono `samples` at `rate`; returns once the last frame is sent (at once
        when the call is over)."""
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(
                f"play() takes mono int16 samples, got {samples.dtype} {samples.shape}"
            )
        converter = self._converter_for(rate)
        data = converter.to_bytes(samples.astype("<i2", copy=False).tobytes())
        data += converter.flush_bytes()
        frames = self._framer.push(data)
        if (last := self._framer.flush(pad=True)) is not None:
            frames.append(last)
        await self._speak(frames)
        if not self.ended:
            end = self.now
            self._awaiting.append((end - len(frames) * self._frame_s, end))

    async def silence(self, seconds: float) -> None:
        """Send `seconds` of silence after what is queued; returns once it is sent."""
        await self._speak([self._silence] * round(seconds / self._frame_s))

    async def dtmf(self, digits: str, gap_s: float = 0.1) -> None:
        """Press each key of `digits`, `gap_s` apart (audio keeps flowing meanwhile)."""
        if self.ended:
            return
        for i, digit in enumerate(digits):
            if i:
                await asyncio.sleep(gap_s)
            self._dtmf.append((self.now, digit))
            for frame in self._far.dtmf(digit):
                await self._send(frame)
        self._caller_quiet_since = self._loop.time()

    async def send(self, frame: Frame) -> None:
        """Send one raw frame now (protocol probes in tests)."""
        await self._send(frame)

    async def wait_until_quiet(
        self,
        quiet_s: float = 1.0,
        timeout: float = 30.0,  # noqa: ASYNC109 - the API: a False result, not an error
    ) -> bool:
        """True once no agent audio has played and the caller has been silent for `quiet_s`;
        False when the call ends or `timeout` passes first."""
        deadline = self._loop.time() + timeout
        while not self.ended:
            now = self._loop.time()
            since = now if self._caller_busy else max(self._play_end, self._caller_quiet_since)
            if since + quiet_s <= now:
                return True
            if now >= deadline:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(since + quiet_s, deadline) - now):
                    await self._ended.wait()
        return False

    async def hangup(self) -> None:
        """Hang up as the provider does when the caller does: its messages, then close."""
        if self.ended or self._end_reason is not None:
            return
        self._end_reason = HUNG_UP
        await self._stop_sender()
        for frame in self._far.hangup():
            await self._send(frame)
        await self._close()

    async def drop(self) -> None:
        """Drop the line: close the socket without the provider's hang-up messages."""
        if self._end_reason is None:
            self._end_reason = DROPPED
        await self._stop_sender()
        await self._close()

    def result(self) -> DialResult:
        caller = self._caller.samples()
        agent = self._agent.samples()
        return DialResult(
            agent_audio=agent,
            caller_audio=caller,
            agent_spans=self._agent.spans(),
            heard=list(self.heard),
            turns=[*self._turns, *(Turn(start, end, None) for start, end in self._awaiting)],
            dtmf=list(self._dtmf),
            end_reason=self._end_reason or "in progress",
            received_count=self._received_count,
        )

    # --- sending --------------------------------------------------------------------------

    def _converter_for(self, rate: int) -> AudioConverter:
        if self._converter is None:
            source = AudioFormat(Encoding.PCM16, rate)
            self._converter = AudioConverter(source, self._far.audio_format)
        elif self._converter.src.sample_rate != rate:
            raise ValueError(
                f"this call plays audio at {self._converter.src.sample_rate} Hz, not {rate} Hz"
            )
        return self._converter

    async def _speak(self, frames: list[bytes]) -> None:
        if self.ended or not frames:
            return
        self._queue.extend(frames)
        self._queued += len(frames)
        done = self._loop.create_future()
        self._waiters.append((self._queued, done))
        self._caller_busy += 1
        try:
            await done
        finally:
            self._caller_busy -= 1
            self._caller_quiet_since = self._loop.time()

    async def _run_sender(self) -> None:
        if self._far.waits_for_ready:
            await self._ready.wait()
        start = self._loop.time()
        first = start - self.started_at
        n = 0
        while True:
            n += 1
            delay = start + n * self._frame_s - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._queue:
                data = self._queue.popleft()
                self._sent += 1
            else:
                data = self._silence
            if self._record:
                self._caller.add(first + (n - 1) * self._frame_s, data)
            await self._send(self._far.audio(data))
            while self._waiters and self._waiters[0][0] <= self._sent:
                _, done = self._waiters.popleft()
                if not done.done():
                    done.set_result(None)

    async def _stop_sender(self) -> None:
        self._sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sender
        self._release_waiters()

    def _release_waiters(self) -> None:
        self._queue.clear()
        while self._waiters:
            _, done = self._waiters.popleft()
            if not done.done():
                done.set_result(None)

    async def _send(self, frame: Frame) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(frame)

    def _send_soon(self, frame: Frame) -> None:
        task = asyncio.create_task(self._send(frame))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    # --- receiving ------------------------------------------------------------------------

    async def _run_reader(self) -> None:
        try:
            async for frame in self._ws:
                now = self._loop.time()
                self._received_count += 1
                if self._record:
                    self.received.append((now - self.started_at, frame))
                try:
                    reactions = self._far.receive(frame)
                except Exception as exc:
                    self._error = exc
                    self._end_reason = f"invalid message from the server: {exc}"
                    break
                for reaction in reactions:
                    await self._react(reaction, now)
                if self._end_reason is not None:
                    break
        except ConnectionClosed:
            pass
        finally:
            if self._end_reason is None:
                code, why = self._ws.close_code, self._ws.close_reason
                self._end_reason = f"closed by the server ({code}{f': {why}' if why else ''})"
            self._finish()
        with contextlib.suppress(ConnectionClosed):
            await self._ws.close()

    async def _react(self, reaction: Reaction, now: float) -> None:
        match reaction:
            case Play(data=data):
                self._answer_turns(now)
                start = max(now, self._play_end)
                if self._record:
                    self._agent.add(start - self.started_at, data)
                self._play_end = start + self._far.audio_format.duration(data)
            case PlayMarker(token=token):
                if self._play_end <= now:
                    self._marker_played(token)
                else:
                    self._markers[token] = self._loop.call_at(
                        self._play_end, self._marker_played, token
                    )
            case Clear():
                self._agent.cut(now - self.started_at)
                self._play_end = min(self._play_end, now)
                for token, handle in list(self._markers.items()):
                    handle.cancel()
                    self._marker_played(token)
            case Send(frame=frame):
                await self._send(frame)
            case Ready():
                self._ready.set()
            case Heard():
                self.heard.append((now - self.started_at, reaction))
            case Ended(reason=reason):
                self._end_reason = reason

    def _marker_played(self, token: str) -> None:
        self._markers.pop(token, None)
        frame = self._far.marker_played(token)
        if frame is not None:
            self._send_soon(frame)

    def _answer_turns(self, now: float) -> None:
        at = now - self.started_at
        for start, end in self._awaiting:
            self._turns.append(Turn(start, end, at))
        self._awaiting.clear()

    # --- ending ---------------------------------------------------------------------------

    def _finish(self) -> None:
        self._sender.cancel()
        for handle in self._markers.values():
            handle.cancel()
        self._markers.clear()
        self._release_waiters()
        self._ended.set()

    async def _close(self) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self._ws.close()
        await self._reader

    async def _open(self, within: float) -> None:
        for frame in self._far.opening():
            await self._send(frame)
        if not self._far.waits_for_ready:
            self._ready.set()
            return
        ready = asyncio.create_task(self._ready.wait())
        ended = asyncio.create_task(self._ended.wait())
        try:
            await asyncio.wait({ready, ended}, timeout=within, return_when="FIRST_COMPLETED")
        finally:
            ready.cancel()
            ended.cancel()
        if not self._ready.is_set():
            why = self._end_reason if self.ended else f"no answer within {within:g} s"
            raise DialError(f"the server did not accept the stream: {why}")

    async def _shutdown(self) -> None:
        """Leave the call: hang up if it is still up, then stop every task."""
        if not self.ended:
            await self.hangup()
        await self._stop_sender()
        await self._reader
        for task in list(self._sends):
            task.cancel()
        await asyncio.gather(*self._sends, return_exceptions=True)
        if self._error is not None:
            raise DialError(self._end_reason or str(self._error)) from self._error


@contextlib.asynccontextmanager
async def dial(
    far_end: FarEnd, url: str, *, open_timeout: float = 10.0, record: bool = True
) -> AsyncIterator[DialSession]:
    """Call the server at `url` as `far_end`'s provider; see the module docstring."""
    try:
        ws = await connect(
            url,
            additional_headers=dict(far_end.headers()),
            open_timeout=open_timeout,
            close_timeout=CLOSE_TIMEOUT_S,
            compression=None,
        )
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise DialError(f"{url} refused the call: HTTP {status}", status=status) from exc
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        raise DialError(f"cannot reach {url}: {exc or type(exc).__name__}") from exc
    session = DialSession(far_end, ws, record=record)
    try:
        await session._open(open_timeout)
        yield session
    finally:
        await session._shutdown()


Step = Callable[[DialSession], Awaitable[object]]
DROPPED = "caller dropped the line"
HUNG_UP = "caller hung up"


def call_script(
    samples: Samples, rate: int, *, turns: int, dtmf: str | None, quiet_s: float
) -> list[Step]:
    """Let the greeting finish; `turns` times speak and wait for the answer; press `dtmf`."""

    async def quiet(call: DialSession) -> object:
        return await call.wait_until_quiet(quiet_s)

    async def speak(call: DialSession) -> object:
        await call.play(samples, rate)
        return None

    async def keys(call: DialSession) -> object:
        await call.dtmf(dtmf or "")
        return None

    steps: list[Step] = [quiet]
    for _ in range(turns):
        steps += [speak, quiet]
    if dtmf:
        steps += [keys, quiet]
    return steps


async def run_script(
    far_end: FarEnd,
    url: str,
    steps: Sequence[Step],
    *,
    drop_after: float | None = None,
    resume_url: str | None = None,
) -> list[DialResult]:
    """Run `steps`, then hang up. With `drop_after`, the line drops that many seconds into the
    call (the socket closes with no hang-up message); with `resume_url`, the same call then
    reconnects there (`far_end.resumed()`) and runs the steps not yet done, starting again
    with the one the drop cut short. One result per connection."""
    legs: list[DialResult] = []
    done = 0
    async with dial(far_end, url) as call:
        dropping: set[asyncio.Task[None]] = set()
        timer = None
        if drop_after is not None:
            timer = asyncio.get_running_loop().call_later(
                drop_after, lambda: dropping.add(asyncio.create_task(call.drop()))
            )
        for step in steps:
            await step(call)
            if call.ended:
                break
            done += 1
        if timer is not None:
            timer.cancel()
        await asyncio.gather(*dropping)
    legs.append(call.result())
    if resume_url is not None and call.end_reason == DROPPED:
        async with dial(far_end.resumed(), resume_url) as again:
            for step in steps[done:]:
                await step(again)
        legs.append(again.result())
    return legs


async def run_dial(
    far_end: FarEnd,
    url: str,
    wav: Path,
    *,
    dtmf: str | None = None,
    turns: int = 1,
    quiet_s: float = 1.0,
) -> DialResult:
    """A scripted call: let the greeting finish, then `turns` times speak `wav` and wait for
    the agent to finish answering, then press `dtmf` and wait again; hang up."""
    samples, rate = read_wav(wav)
    steps = call_script(samples, rate, turns=turns, dtmf=dtmf, quiet_s=quiet_s)
    [result] = await run_script(far_end, url, steps)
    return result
