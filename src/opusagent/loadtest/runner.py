"""Run a load test: N calls placed over the ramp, each saying the caller's utterance again and
again in real time for its duration, every one through the `opusagent dial` dialler."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

from opusagent.bridges.dial import HUNG_UP, DialError, DialSession, Turn, dial
from opusagent.bridges.farend import FarEnd
from opusagent.bridges.farends import far_end_for
from opusagent.loadtest.meter import AudioMeter, MeteredFarEnd
from opusagent.loadtest.plan import LoadPlan
from opusagent.loadtest.sampler import LoopLag, ServerSample, ServerSampler


@dataclass(slots=True)
class CallOutcome:
    """What happened on one call of the test."""

    index: int
    meter: AudioMeter
    connected_at: float | None = None
    """Loop time the socket opened; None when the call never connected."""
    ended_at: float | None = None
    turns: list[Turn] = field(default_factory=list)
    end_reason: str | None = None
    error: str | None = None
    early: set[int] = field(default_factory=set)
    """Turns (by index) the agent began answering before the caller had finished: the VAD
    ended the turn at a pause within the utterance. Their latency means nothing."""

    def latencies(self) -> list[float]:
        """Seconds from the end of each turn to its answer (answered, not early, turns)."""
        return [
            t.latency
            for i, t in enumerate(self.turns)
            if t.latency is not None and i not in self.early
        ]

    @property
    def seconds(self) -> float:
        if self.connected_at is None or self.ended_at is None:
            return 0.0
        return self.ended_at - self.connected_at

    @property
    def dropped(self) -> bool:
        """The call connected and then ended without the caller hanging up."""
        return self.connected_at is not None and self.end_reason != HUNG_UP

    @property
    def missed_turns(self) -> int:
        return sum(turn.agent_start is None for turn in self.turns)

    @property
    def succeeded(self) -> bool:
        """Connected, no error, not dropped, and every turn answered."""
        return (
            self.error is None and not self.dropped and bool(self.turns) and self.missed_turns == 0
        )


@dataclass(frozen=True, slots=True)
class LoadResult:
    plan: LoadPlan
    outcomes: list[CallOutcome]
    started_at: float
    ended_at: float
    server: list[ServerSample]
    server_pid: int | None
    loop_lags: list[float]
    client_cpu_s: float
    frame_ms: int
    """Duration of each audio message of the bridge, both ways."""


class LoadRun:
    """One load test; its counters can be read while it runs (the progress bar)."""

    def __init__(
        self, plan: LoadPlan, *, server_pid: int | None = None, idle_s: float = 0.0
    ) -> None:
        self.plan = plan
        self._idle_s = idle_s
        """Seconds the server is watched with no call before the first is placed."""
        self._sampler = ServerSampler(server_pid) if server_pid is not None else None
        self.placed = 0
        self.active = 0
        self.finished = 0
        self.failed = 0
        self.turns = 0
        self.outcomes: list[CallOutcome] = []

    async def run(self) -> LoadResult:
        loop = asyncio.get_running_loop()
        lag = LoopLag()
        watchers = [asyncio.create_task(lag.run())]
        if self._sampler is not None:
            watchers.append(asyncio.create_task(self._sampler.run(lambda: self.active)))
            await asyncio.sleep(self._idle_s)
        started = loop.time()
        self.outcomes = [CallOutcome(i, AudioMeter(loop.time)) for i in range(self.plan.calls)]
        try:
            await asyncio.gather(*(self._call(o, started) for o in self.outcomes))
        finally:
            for watcher in watchers:
                watcher.cancel()
            for watcher in watchers:
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
        if self._sampler is not None:
            self._sampler.sample(self.active)
        return LoadResult(
            plan=self.plan,
            outcomes=self.outcomes,
            started_at=started,
            ended_at=loop.time(),
            server=self._sampler.samples if self._sampler is not None else [],
            server_pid=self._sampler.pid if self._sampler is not None else None,
            loop_lags=list(lag.lags),
            client_cpu_s=lag.cpu_end - lag.cpu_start,
            frame_ms=self._far_end().frame_ms,
        )

    async def _call(self, outcome: CallOutcome, started: float) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(max(0.0, started + self.plan.start_offset(outcome.index) - loop.time()))
        self.placed += 1
        far_end = MeteredFarEnd(self._far_end(), outcome.meter)
        call: DialSession | None = None
        try:
            async with dial(far_end, self.plan.url, record=False) as call:
                outcome.connected_at = call.started_at
                self.active += 1
                try:
                    await self._converse(call, outcome)
                finally:
                    self.active -= 1
        except DialError as exc:
            outcome.error = str(exc)
        except Exception as exc:  # one broken call must not stop the test; it is reported
            outcome.error = f"{type(exc).__name__}: {exc}"
        if call is not None:
            result = call.result()
            outcome.turns = result.turns
            outcome.end_reason = result.end_reason
            outcome.ended_at = loop.time()
        self.finished += 1
        self.failed += not outcome.succeeded

    def _far_end(self) -> FarEnd:
        return far_end_for(self.plan.bridge, self.plan.url, token=self.plan.token)

    async def _converse(self, call: DialSession, outcome: CallOutcome) -> None:
        """Let the greeting play, then speak and wait for the answer until the call's time is
        up (at least once; at most `plan.turns` times)."""
        plan = self.plan
        deadline = call.started_at + plan.duration_s
        loop = asyncio.get_running_loop()
        await self._hear_out(call, outcome.meter)
        spoken = 0
        while not call.ended and (plan.turns is None or spoken < plan.turns):
            said = plan.utterance(spoken)
            if spoken and loop.time() + len(said) / plan.rate > deadline:
                break
            outcome.meter.reply_begins()  # what comes while the caller speaks is no answer
            heard = outcome.meter.frames
            await call.play(said, plan.rate)
            if outcome.meter.frames > heard:
                outcome.early.add(spoken)
            outcome.meter.reply_begins()
            await self._hear_out(call, outcome.meter)
            spoken += 1
            self.turns += 1

    async def _hear_out(self, call: DialSession, meter: AudioMeter) -> None:
        """Wait for the agent to start talking (up to `answer_timeout_s`), then to finish: the
        caller never speaks over a late answer, which would then count for the next turn."""
        answer = meter.next_frame()
        ended = asyncio.ensure_future(call.wait_ended())
        either: set[asyncio.Future[Any]] = {answer, ended}
        try:
            await asyncio.wait(
                either, timeout=self.plan.answer_timeout_s, return_when="FIRST_COMPLETED"
            )
        finally:
            answer.cancel()
            ended.cancel()
        await call.wait_until_quiet(self.plan.quiet_s, timeout=self.plan.answer_timeout_s)
