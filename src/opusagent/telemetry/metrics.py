"""Prometheus metrics of one application, in a registry of its own (not the process default).

Every name starts with `opusagent_`. Latencies are in seconds. Per-frame work never touches a
metric: calls are counted as they start and end, turns as they are answered, VAD batches once
per 32 ms tick, and the event-loop lag once per `LOOP_LAG_PERIOD_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

METRICS_PATH = "/metrics"
LOOP_LAG_PERIOD_S = 0.5

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
_FAST_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    """The application's metrics and the registry `/metrics` serves them from."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        ProcessCollector(registry=registry)
        self.active_calls = Gauge(
            "opusagent_active_calls",
            "Calls in progress on this instance.",
            ["bridge", "agent"],
            registry=registry,
        )
        self.calls = Counter(
            "opusagent_calls",
            "Calls ended, by how they ended (the end reason's kind: hangup, socket_closed, "
            "agent_hangup, provider_error, max_duration, ...).",
            ["bridge", "agent", "outcome"],
            registry=registry,
        )
        self.refused_calls = Counter(
            "opusagent_refused_calls",
            "Calls refused before they started (draining, models still loading).",
            ["bridge", "reason"],
            registry=registry,
        )
        self.reply_latency = Histogram(
            "opusagent_reply_latency_seconds",
            "From the end of the caller's input (end of speech, last key) to the first audio "
            "of the reply.",
            ["bridge", "agent", "turn"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.stt_final_latency = Histogram(
            "opusagent_stt_final_latency_seconds",
            "From the end of the caller's turn (the VAD's decision) to the recogniser's final "
            "transcript.",
            ["bridge", "agent"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.llm_first_token = Histogram(
            "opusagent_llm_first_token_seconds",
            "From a language model request to its first token (reported by the LLM client).",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.tts_first_audio = Histogram(
            "opusagent_tts_first_audio_seconds",
            "From the first text of a reply given to the synthesiser to its first audio.",
            ["bridge", "agent"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.stage_failures = Counter(
            "opusagent_stage_failures",
            "Stage failures (stage: stt, agent, tts; kind: error, timeout, garbage), each "
            "answered by the agent's fallback line or a new recogniser stream.",
            ["stage", "kind"],
            registry=registry,
        )
        self.barge_ins = Counter(
            "opusagent_barge_ins",
            "Agent replies cut off by the caller (speech or keys) before they finished.",
            ["bridge", "agent"],
            registry=registry,
        )
        self.vad_batch_size = Histogram(
            "opusagent_vad_batch_size",
            "Windows (one per call with audio pending) in one batched VAD inference.",
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.vad_batch_duration = Histogram(
            "opusagent_vad_batch_duration_seconds",
            "Time one batched VAD inference took.",
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        self.loop_lag = Histogram(
            "opusagent_event_loop_lag_seconds",
            "How late a periodic wake-up on the event loop ran (time the loop was blocked).",
            buckets=_FAST_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "opusagent_errors",
            "Errors logged, by kind (the exception's type, or the logger's name).",
            ["kind"],
            registry=registry,
        )
        self.draining = Gauge(
            "opusagent_draining",
            "1 while this instance drains (takes no new calls) before it stops.",
            registry=registry,
        )

    def vad_batch(self, size: int, seconds: float) -> None:
        """One batched VAD inference (called from the VAD's worker thread; thread-safe)."""
        self.vad_batch_size.observe(size)
        self.vad_batch_duration.observe(seconds)

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format."""
        return generate_latest(self.registry)


def mount_metrics(app: FastAPI, metrics: Metrics) -> None:
    """Serve `GET /metrics` (Prometheus text format) on `app`."""

    @app.get(METRICS_PATH, summary="Prometheus metrics of this instance", include_in_schema=False)
    async def serve_metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


class ErrorCounter(logging.Handler):
    """Counts log records at ERROR and above into `opusagent_errors` by kind."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__(logging.ERROR)
        self._errors = metrics.errors

    def emit(self, record: logging.LogRecord) -> None:
        self._errors.labels(error_kind(record)).inc()


def error_kind(record: logging.LogRecord) -> str:
    """The exception's type name when there is one, else the logger's name."""
    if record.exc_info and record.exc_info[0] is not None:
        return record.exc_info[0].__name__
    return record.name.removeprefix("opusagent.")


class LoopLagMonitor:
    """Wakes every `period` seconds and records how late it woke: the loop's blocked time."""

    def __init__(self, metrics: Metrics, period: float = LOOP_LAG_PERIOD_S) -> None:
        self._lag = metrics.loop_lag
        self._period = period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="loop lag")

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self._period
            await asyncio.sleep(self._period)
            self._lag.observe(max(0.0, loop.time() - due))
