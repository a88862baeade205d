"""A periodic task on the event loop, on an absolute schedule."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class PeriodicTask:
    """Runs `tick` at `start + k * period` for k = 1, 2, ... from the loop's clock.

    Tick times never drift, since each is computed from the start rather than from the previous
    one. A tick that runs past the next due time makes the scheduler skip the ticks it missed
    instead of running them back to back. An exception raised by `tick` is logged and the
    schedule goes on.
    """

    def __init__(self, period: float, tick: Callable[[], Awaitable[None]], *, name: str) -> None:
        if period <= 0:
            raise ValueError(f"period must be positive, got {period}")
        self._period = period
        self._tick = tick
        self._name = name
        self._task: asyncio.Task[None] | None = None
        self.skipped = 0
        """Ticks not run because an earlier one overran."""

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start ticking on the running loop (no-op if already running)."""
        if not self.running:
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self._run(loop), name=self._name)

    async def aclose(self) -> None:
        """Stop ticking; a tick in progress is cancelled."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        start = loop.time()
        k = 1
        while True:
            delay = start + k * self._period - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                await self._tick()
            except Exception:
                logger.exception("%s: tick failed", self._name)
            k += 1
            late = loop.time() - (start + k * self._period)
            if late > 0:
                missed = int(late // self._period) + 1
                self.skipped += missed
                k += missed
