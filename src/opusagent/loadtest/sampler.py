"""Watching both ends while the load runs: the server process's CPU time and memory (by pid,
with its worker processes) and how late the load tool's own event loop runs."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

SAMPLE_EVERY_S = 0.5
LAG_TICK_S = 0.02


class SamplerError(RuntimeError):
    """The server process cannot be watched."""


@dataclass(frozen=True, slots=True)
class ServerSample:
    at: float
    """Loop time of the sample."""
    cpu_s: float
    """User + system CPU seconds of the process and its children so far."""
    rss: int
    """Resident memory of the process and its children, in bytes."""
    waited_s: float | None
    """Seconds the main threads (the event loops) of the process and its children have spent
    ready to run but waiting for a CPU (Linux schedstat; None elsewhere): when this grows
    nearly as fast as the clock, other processes are starving the server."""
    calls: int
    """Calls connected at that moment."""


def _psutil() -> ModuleType:
    """psutil, imported only when a server is sampled (it comes with the loadtest extra)."""
    try:
        return importlib.import_module("psutil")
    except ImportError as exc:  # pragma: no cover - the extra is part of the locked venv
        raise SamplerError(
            "sampling the server needs psutil: install the loadtest extra "
            "(uv sync --extra loadtest)"
        ) from exc


class ServerSampler:
    """Samples process `pid` (and its children, e.g. uvicorn workers) every `every_s`."""

    def __init__(self, pid: int, every_s: float = SAMPLE_EVERY_S) -> None:
        psutil = _psutil()
        try:
            self._process: Any = psutil.Process(pid)
            self._process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied) as exc:
            raise SamplerError(f"cannot watch server process {pid}: {exc}") from exc
        self.pid = pid
        self._errors = (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess)
        self._every_s = every_s
        self.samples: list[ServerSample] = []

    def sample(self, calls: int) -> None:
        cpu = 0.0
        rss = 0
        waited: float | None = 0.0
        processes = [self._process]
        with contextlib.suppress(*self._errors):
            processes += self._process.children(recursive=True)
        for process in processes:
            with contextlib.suppress(*self._errors), process.oneshot():
                times = process.cpu_times()
                cpu += times.user + times.system
                rss += process.memory_info().rss
            wait = _run_queue_wait(process.pid)
            waited = None if wait is None or waited is None else waited + wait
        now = asyncio.get_running_loop().time()
        self.samples.append(ServerSample(now, cpu, rss, waited, calls))

    async def run(self, calls: Callable[[], int]) -> None:
        """Sample until cancelled."""
        while True:
            self.sample(calls())
            await asyncio.sleep(self._every_s)


def _run_queue_wait(pid: int) -> float | None:
    """Seconds the main thread of process `pid` waited for a CPU so far
    (`/proc/<pid>/schedstat`: time on the CPU, time waiting on a run queue, in ns; Linux)."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
        return int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class LoopLag:
    """How late a 20 ms timer of this event loop fires: when it is late, the load tool itself
    is the bottleneck and its timings are not the server's."""

    def __init__(self) -> None:
        self.lags = array("d")
        self.cpu_start = time.process_time()
        self.cpu_end = self.cpu_start

    async def run(self) -> None:
        """Measure until cancelled."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                due = loop.time() + LAG_TICK_S
                await asyncio.sleep(LAG_TICK_S)
                self.lags.append(max(0.0, loop.time() - due))
        finally:
            self.cpu_end = time.process_time()
