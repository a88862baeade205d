"""An asyncio event loop whose clock jumps ahead instead of waiting.

When nothing is ready to run, the loop advances its clock straight to the next timer, so a
10-minute call scripted on a timeline runs in a fraction of a second and every time it
reports is exact. Code under test needs no changes: it just uses `loop.time()`, `call_at`,
`asyncio.sleep` and friends as usual. Real I/O still works: ready file descriptors are
served before time moves. Work handed to a thread (`run_in_executor`, `asyncio.to_thread`)
takes no virtual time: the clock stands still until it is done, so a time limit never expires
because a thread was slower in real time than the timers around it.
"""

from __future__ import annotations

import asyncio
import selectors
from asyncio import Future
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class _JumpingSelector(selectors.DefaultSelector):
    """Polls without blocking; when idle with a timeout, tells the loop to jump ahead (unless a
    thread is working for the loop: then it waits, in real time, for that to finish)."""

    def __init__(self) -> None:
        super().__init__()
        self.jump: Callable[[float], None] = lambda _seconds: None
        self.threads_working: Callable[[], bool] = lambda: False

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None or self.threads_working():
            # Only I/O (e.g. a worker thread finishing) can wake us, or should.
            return super().select(None)
        self.jump(timeout)
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at 0.0."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        self._threads = 0
        selector = _JumpingSelector()
        super().__init__(selector)
        selector.jump = self._jump
        selector.threads_working = lambda: self._threads > 0

    def time(self) -> float:
        return self._virtual_now

    def run_in_executor(
        self, executor: Executor | None, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> Future[T]:
        future = super().run_in_executor(executor, func, *args)
        self._threads += 1
        future.add_done_callback(self._thread_done)
        return future

    def _thread_done(self, _future: Future[Any]) -> None:
        self._threads -= 1

    def _jump(self, seconds: float) -> None:
        self._virtual_now += seconds


def run_in_virtual_time(main: Callable[[], Awaitable[T]], *, debug: bool = False) -> T:
    """Run `main()` to completion on a fresh `VirtualTimeLoop`."""
    with asyncio.Runner(loop_factory=VirtualTimeLoop, debug=debug) as runner:
        result: Any = runner.run(_as_coroutine(main))
        return result  # type: ignore[no-any-return]


async def _as_coroutine(main: Callable[[], Awaitable[T]]) -> T:
    return await main()
