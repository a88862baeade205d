"""The bounded worker pool where speech models run, so the event loop never waits on them.

One pool per process, shared by every call's STT and TTS work: its size bounds how much model
work runs at once, and a slow synthesis queues behind the others instead of stalling the loop.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class ModelWorkers:
    """A fixed number of threads for blocking model calls (they release the GIL in C code)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"the worker pool needs at least one thread, got {size}")
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="opusagent-model")

    async def run(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on a worker and wait for it without blocking the loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def submit(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Start `fn` on a worker; the future resolves on the running loop."""
        return asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def close(self) -> None:
        """Stop taking work; work already queued still finishes."""
        self._executor.shutdown(wait=False, cancel_futures=False)
