"""Decoder processes and the bounded pool that lends them to calls, one utterance at a time.

A decoder holds the acoustic model, language model and dictionary: its process takes ~0.36 s
to start (0.19 s of it creating the decoder) and ~125 MB resident. So calls share a few: a
stream checks one out when the caller starts speaking and returns it after the final. Every
utterance primes the cepstral mean, so nothing of one call leaks into the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from typing import IO, cast

from opusagent.voice.stt.errors import DecoderError, STTUnavailableError
from opusagent.voice.stt.sphinx_model import SphinxModel
from opusagent.voice.stt.sphinx_protocol import (
    Abort,
    Failed,
    Final,
    Load,
    Progress,
    Quit,
    Ready,
    Reply,
    Request,
    Step,
    read_reply,
    write_message,
)

log = logging.getLogger(__name__)

_QUIT_WAIT_S = 2.0


class DecoderProcess:
    """A decoder process; blocking calls, for worker threads, one caller at a time."""

    def __init__(self, model: SphinxModel) -> None:
        """Start the process and ask it to load `model`; `wait_ready` waits for that."""
        model.check()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self._process = subprocess.Popen(
            [sys.executable, "-m", "opusagent.voice.stt.sphinx_decoder"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self._requests = cast(IO[bytes], self._process.stdin)
        self._replies = cast(IO[bytes], self._process.stdout)
        self._load = Load(model)
        self.load_seconds = 0.0
        self.rss_bytes: int | None = None

    def wait_ready(self) -> None:
        """Wait until the model is loaded (blocking); the process is stopped if it fails."""
        try:
            reply = self._call(self._load)
            if not isinstance(reply, Ready):
                raise DecoderError(f"unexpected reply {type(reply).__name__}")
        except DecoderError as exc:
            self.close()
            raise STTUnavailableError(f"pocketsphinx decoder did not start: {exc}") from exc
        self.load_seconds = reply.seconds
        self.rss_bytes = reply.rss_bytes

    @property
    def pid(self) -> int:
        return self._process.pid

    def step(self, step: Step) -> Progress | Final:
        reply = self._call(step)
        if not isinstance(reply, Progress | Final):
            raise DecoderError(f"unexpected reply {type(reply).__name__}")
        return reply

    def abort(self) -> None:
        """Drop the utterance in progress, so the decoder can serve another."""
        self._call(Abort())

    def close(self) -> None:
        """Ask the process to exit and reap it (killed if it does not exit promptly)."""
        with contextlib.suppress(OSError, ValueError):
            write_message(self._requests, Quit())
        with contextlib.suppress(OSError, ValueError):
            self._requests.close()  # a process that missed Quit sees the end of its input
        try:
            self._process.wait(_QUIT_WAIT_S)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._replies.close()

    def _call(self, request: Request) -> Reply:
        try:
            write_message(self._requests, request)
            reply = read_reply(self._replies)
        except (OSError, EOFError, ValueError, TypeError) as exc:
            raise DecoderError(f"decoder process {self.pid} is gone: {exc}") from exc
        if isinstance(reply, Failed):
            raise DecoderError(reply.message)
        return reply


def _fail(waiter: asyncio.Future[DecoderProcess]) -> None:
    if not waiter.done():
        waiter.set_exception(DecoderError("the decoder pool is closed"))


class DecoderPool:
    """`size` decoder processes, lent out one at a time; started by `preload`, or else on
    demand.

    `acquire` and `release` run on the event loop. Waiting for a process to start or stop
    takes a thread of the loop's default executor, not one of `ModelWorkers`, whose threads
    stay free for decoding.
    """

    def __init__(self, spawn: Callable[[], DecoderProcess], size: int) -> None:
        if size < 1:
            raise ValueError(f"the decoder pool needs at least one decoder, got {size}")
        self._spawn = spawn
        self.size = size
        self._lock = threading.Lock()  # `preload` may run on a worker thread
        self._idle: deque[DecoderProcess] = deque()
        self._all: set[DecoderProcess] = set()
        self._starting = 0
        self._waiters: deque[asyncio.Future[DecoderProcess]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def started(self) -> int:
        return len(self._all)

    def preload(self) -> list[DecoderProcess]:
        """Start the decoders not started yet, in parallel, and keep them idle (blocking);
        returns them."""
        with self._lock:
            count = self.size - len(self._all) - self._starting
        spawned: list[DecoderProcess] = []
        try:
            spawned.extend(self._spawn() for _ in range(count))
            for decoder in spawned:
                decoder.wait_ready()
        except Exception:
            for decoder in spawned:
                decoder.close()
            raise
        with self._lock:
            self._all.update(spawned)
            self._idle.extend(spawned)
        return spawned

    async def acquire(self) -> DecoderProcess:
        """An idle decoder; waits while all `size` are lent out. Safe to cancel."""
        if self._closed:
            raise DecoderError("the decoder pool is closed")
        with self._lock:
            if self._idle:
                return self._idle.popleft()
            grow = len(self._all) + self._starting < self.size
            if grow:
                self._starting += 1
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[DecoderProcess] = loop.create_future()
        self._waiters.append(waiter)
        if grow:
            task = loop.create_task(self._grow())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            log.warning("all %d pocketsphinx decoders are busy; an utterance waits", self.size)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            else:
                self._waiters.remove(waiter)
            raise

    def release(self, decoder: DecoderProcess) -> None:
        """Give a decoder back (its utterance finished or aborted)."""
        if self._closed:
            self.discard(decoder)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(decoder)
                return
        with self._lock:
            self._idle.append(decoder)

    def discard(self, decoder: DecoderProcess) -> None:
        """Stop a decoder that failed or is not needed; a new one starts when next needed."""
        with self._lock:
            self._all.discard(decoder)
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(decoder.close))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Stop every idle decoder now and each lent one when it comes back (blocking; from
        any thread)."""
        self._closed = True
        with self._lock:
            idle = list(self._idle)
            self._idle.clear()
            self._all.difference_update(idle)
        for decoder in idle:
            decoder.close()
        for waiter in list(self._waiters):
            waiter.get_loop().call_soon_threadsafe(_fail, waiter)

    async def _grow(self) -> None:
        try:
            decoder = self._spawn()
            await asyncio.to_thread(decoder.wait_ready)
        except Exception as exc:
            log.exception("could not start a pocketsphinx decoder")
            with self._lock:
                self._starting -= 1
            waiter = next((w for w in self._waiters if not w.done()), None)
            if waiter is not None:
                self._waiters.remove(waiter)
                waiter.set_exception(DecoderError(f"could not start a decoder: {exc}"))
            return
        with self._lock:
            self._starting -= 1
            self._all.add(decoder)
        self.release(decoder)
