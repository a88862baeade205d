"""Metrics that are not about one call: errors, the VAD's batches, the event loop's lag."""

from __future__ import annotations

import asyncio
import logging
import time

import numpy as np

from opusagent.telemetry import Metrics
from opusagent.telemetry.metrics import ErrorCounter, LoopLagMonitor
from opusagent.voice.vad import SileroModel, SileroVAD

from .served import Samples, parse, sample


def shown(metrics: Metrics) -> Samples:
    return parse(metrics.exposition().decode())


def test_errors_are_counted_by_exception_type_or_logger() -> None:
    metrics = Metrics()
    logger = logging.getLogger("opusagent.bridges.session")
    counter = ErrorCounter(metrics)
    logger.addHandler(counter)
    try:
        try:
            raise TimeoutError("no answer")
        except TimeoutError:
            logger.exception("failed")
        logger.error("refusing the stream")
        logger.warning("not an error")
    finally:
        logger.removeHandler(counter)

    errors = shown(metrics)
    assert sample(errors, "opusagent_errors_total", kind="TimeoutError") == 1
    assert sample(errors, "opusagent_errors_total", kind="bridges.session") == 1


def test_each_vad_batch_is_measured() -> None:
    metrics = Metrics()
    vad = SileroVAD(SileroModel())
    vad.on_batch = metrics.vad_batch
    streams = [vad.open_stream(lambda probability, at: None) for _ in range(3)]
    for stream in streams:
        stream.push(np.zeros(512 * 2, np.int16))

    assert vad.step() == 6

    batches = shown(metrics)
    assert sample(batches, "opusagent_vad_batch_size_count") == 2
    assert sample(batches, "opusagent_vad_batch_size_sum") == 6
    duration = sample(batches, "opusagent_vad_batch_duration_seconds_sum")
    assert duration is not None and duration > 0


async def test_a_blocked_event_loop_shows_as_lag() -> None:
    metrics = Metrics()
    monitor = LoopLagMonitor(metrics, period=0.02)
    monitor.start()
    await asyncio.sleep(0.05)
    time.sleep(0.2)  # noqa: ASYNC251 - blocking the loop is the point
    await asyncio.sleep(0.05)
    await monitor.aclose()

    lag = shown(metrics)
    total = sample(lag, "opusagent_event_loop_lag_seconds_sum")
    assert total is not None and 0.15 < total < 0.5
    assert (sample(lag, "opusagent_event_loop_lag_seconds_bucket", le="0.25") or 0) >= 1
