"""SileroVAD against the real Silero v5 model: batching, scheduling and detection on speech."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
import soxr

from opusagent.call.stages import VAD, Samples
from opusagent.voice.vad import SileroModel, SileroVAD
from opusagent.voice.vad.scheduler import PeriodicTask
from opusagent.voice.vad.silero import CONTEXT_SAMPLES, STATE_SIZE, WINDOW_SAMPLES, Floats

pytestmark = pytest.mark.slow

RATE = 16_000


def synthetic_audio(seed: int, seconds: float) -> Samples:
    """Harmonic bursts over noise: distinct per seed, varied enough to move the model's state."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    f0 = rng.uniform(90, 260)
    voiced = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 12))
    bursts = np.sin(2 * np.pi * rng.uniform(1.5, 4.0) * t) > 0
    noise = rng.standard_normal(n) * rng.uniform(50, 800)
    return np.clip(voiced * bursts * 6000 + noise, -32768, 32767).astype(np.int16)


def reference_probabilities(audio: Samples) -> list[float]:
    """The model stepped window by window on its own, straight from its I/O contract."""
    model = SileroModel()
    state = np.zeros((2, 1, STATE_SIZE), np.float32)
    context = np.zeros(CONTEXT_SAMPLES, np.float32)
    out = []
    for k in range(len(audio) // WINDOW_SAMPLES):
        window = audio[k * WINDOW_SAMPLES : (k + 1) * WINDOW_SAMPLES].astype(np.float32) / 32768.0
        probability, state = model.run(np.concatenate([context, window])[None, :], state)
        out.append(float(probability[0]))
        context = window[-CONTEXT_SAMPLES:]
    return out


class Collector:
    """A VAD callback that records results and lets a test await them."""

    def __init__(self) -> None:
        self.results: list[tuple[float, float]] = []
        self._arrived = asyncio.Event()

    def __call__(self, probability: float, at: float) -> None:
        self.results.append((probability, at))
        self._arrived.set()

    @property
    def probabilities(self) -> list[float]:
        return [p for p, _ in self.results]

    @property
    def times(self) -> list[float]:
        return [at for _, at in self.results]

    async def wait_for(self, count: int, seconds: float = 2.0) -> None:
        async with asyncio.timeout(seconds):
            while len(self.results) < count:
                self._arrived.clear()
                await self._arrived.wait()


def drain(vad: SileroVAD) -> None:
    while vad.step():
        pass


@pytest.fixture
async def vad() -> AsyncIterator[SileroVAD]:
    detector = SileroVAD()
    yield detector
    await detector.aclose()


@pytest.fixture(scope="module")
def speech(speak: Callable[[str], tuple[Samples, int]]) -> Samples:
    audio, rate = speak(
        "The quick brown fox jumps over the lazy dog. Please transfer me to billing."
    )
    resampled: Samples = soxr.resample(audio, rate, RATE)
    return resampled


def test_implements_vad_protocol() -> None:
    detector: VAD = SileroVAD()
    assert detector.sample_rate == RATE
    assert detector.window_seconds == 0.032


def test_step_batch_equals_each_stream_alone() -> None:
    clips = [synthetic_audio(seed, 1.5) for seed in range(6)]
    chunk_sizes = [160, 320, 511, 512, 1000, 4000]
    detector = SileroVAD()
    collectors = [Collector() for _ in clips]
    streams = [detector.open_stream(c) for c in collectors]
    offsets = [0] * len(clips)
    while any(offset < len(clip) for offset, clip in zip(offsets, clips, strict=True)):
        for i, (stream, clip, size) in enumerate(zip(streams, clips, chunk_sizes, strict=True)):
            stream.push(clip[offsets[i] : offsets[i] + size])
            offsets[i] += size
        detector.step()
    drain(detector)

    for clip, batched in zip(clips, collectors, strict=True):
        alone_detector = SileroVAD()
        alone = Collector()
        alone_detector.open_stream(alone).push(clip)
        drain(alone_detector)
        assert np.array_equal(batched.probabilities, alone.probabilities)
        assert np.array_equal(batched.probabilities, reference_probabilities(clip))


async def test_scheduler_batch_equals_reference_with_bursty_arrival(vad: SileroVAD) -> None:
    clips = [synthetic_audio(seed, 1.0) for seed in (10, 11, 12)]
    collectors = [Collector() for _ in clips]
    streams = [vad.open_stream(c) for c in collectors]
    frame = 1600  # 100 ms every 20 ms: five times real time, so catch-up rounds are needed
    for start in range(0, len(clips[0]), frame):
        for stream, clip in zip(streams, clips, strict=True):
            stream.push(clip[start : start + frame])
        await asyncio.sleep(0.02)
    for clip, collector in zip(clips, collectors, strict=True):
        await collector.wait_for(len(clip) // WINDOW_SAMPLES)
        assert np.array_equal(collector.probabilities, reference_probabilities(clip))
    assert vad.stats.inferences > vad.stats.ticks  # some ticks ran catch-up rounds


def test_detects_speech_and_silence(speech: Samples) -> None:
    silence = np.zeros(RATE, np.int16)
    detector = SileroVAD()
    collector = Collector()
    detector.open_stream(collector).push(np.concatenate([silence, speech, silence]))
    drain(detector)
    probabilities = np.array(collector.probabilities)
    ends = np.array(collector.times)
    starts = ends - 0.032
    speech_end = 1.0 + len(speech) / RATE

    in_silence = (ends <= 1.0) | (starts >= speech_end)
    in_speech = (starts >= 1.0) & (ends <= speech_end)
    assert in_silence.sum() >= 55
    assert probabilities[in_silence].max() < 0.2
    assert (probabilities[in_speech] > 0.5).mean() > 0.7


async def test_one_inference_per_tick_for_many_streams(vad: SileroVAD) -> None:
    collector = Collector()
    streams = [vad.open_stream(collector) for _ in range(50)]
    for seed, stream in enumerate(streams):
        stream.push(synthetic_audio(seed, 0.032))
    await collector.wait_for(50)
    assert vad.stats.inferences == 1
    assert vad.stats.last_batch_size == 50


def test_step_runs_one_inference_for_many_streams() -> None:
    detector = SileroVAD()
    for seed in range(50):
        detector.open_stream(Collector()).push(synthetic_audio(seed, 0.032))
    assert detector.step() == 50
    assert (detector.stats.inferences, detector.stats.last_batch_size) == (1, 50)


async def test_idle_stream_does_not_delay_others(vad: SileroVAD) -> None:
    idle = Collector()
    active = Collector()
    vad.open_stream(idle)
    vad.open_stream(active).push(synthetic_audio(0, 0.032))
    await active.wait_for(1, seconds=0.2)  # a 32 ms tick plus one small inference
    assert idle.results == []
    assert vad.stats.last_batch_size == 1


class GatedModel(SileroModel):
    """The real model, held at the start of each run until the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def run(self, windows: Floats, state: Floats) -> tuple[Floats, Floats]:
        self.entered.set()
        self.release.wait(timeout=5)
        return super().run(windows, state)


async def test_stream_closed_during_inference_gets_no_callback() -> None:
    model = GatedModel()
    detector = SileroVAD(model)
    kept, closed, late = Collector(), Collector(), Collector()
    clip = synthetic_audio(3, 0.064)
    late_clip = synthetic_audio(5, 0.032)
    kept_stream = detector.open_stream(kept)
    closed_stream = detector.open_stream(closed)
    kept_stream.push(clip)
    closed_stream.push(synthetic_audio(4, 0.064))
    try:
        assert await asyncio.to_thread(model.entered.wait, 2)
        closed_stream.close()
        detector.open_stream(late).push(late_clip)
        model.release.set()
        await kept.wait_for(2)
        await late.wait_for(1)
        await asyncio.sleep(0.1)
    finally:
        model.release.set()
        await detector.aclose()
    assert closed.results == []
    assert kept.probabilities == reference_probabilities(clip)
    assert late.probabilities == reference_probabilities(late_clip)


async def test_stream_closed_by_earlier_callback_in_batch(vad: SileroVAD) -> None:
    first, second = Collector(), Collector()

    def record_then_close_second(probability: float, at: float) -> None:
        first(probability, at)
        second_stream.close()

    first_stream = vad.open_stream(record_then_close_second)
    second_stream = vad.open_stream(second)
    first_stream.push(synthetic_audio(0, 0.032))
    second_stream.push(synthetic_audio(1, 0.032))
    await first.wait_for(1)
    await asyncio.sleep(0.05)
    assert vad.stats.last_batch_size == 2
    assert second.results == []


async def test_callback_error_does_not_stop_scheduler(
    vad: SileroVAD, caplog: pytest.LogCaptureFixture
) -> None:
    failed = Collector()

    def fail(probability: float, at: float) -> None:
        failed(probability, at)
        raise RuntimeError("boom")

    healthy = Collector()
    failing_stream = vad.open_stream(fail)
    healthy_stream = vad.open_stream(healthy)
    with caplog.at_level(logging.ERROR):
        for seed in range(3):
            failing_stream.push(synthetic_audio(seed, 0.032))
            healthy_stream.push(synthetic_audio(seed + 10, 0.032))
            await healthy.wait_for(seed + 1)
    assert len(failed.results) == 3
    assert vad.running
    assert "VAD result callback failed" in caplog.text


def test_stream_time_advances_one_window_per_result() -> None:
    detector = SileroVAD()
    collector = Collector()
    detector.open_stream(collector).push(synthetic_audio(0, 0.032 * 5 + 0.01))
    drain(detector)
    assert collector.times == pytest.approx([0.032 * k for k in range(1, 6)])


def test_push_rejects_other_sample_types() -> None:
    stream = SileroVAD().open_stream(lambda p, t: None)
    with pytest.raises(ValueError, match="int16"):
        stream.push(np.zeros(320, np.float32))


async def test_periodic_task_keeps_schedule_and_skips_missed_ticks() -> None:
    loop = asyncio.get_running_loop()
    period = 0.1
    times: list[float] = []

    async def tick() -> None:
        times.append(loop.time())
        if len(times) == 3:
            await asyncio.sleep(2.5 * period)

    task = PeriodicTask(period, tick, name="test")
    task.start()
    await asyncio.sleep(1.0)
    await task.aclose()

    assert np.diff(times).min() > 0.3 * period  # missed ticks are skipped, not replayed
    assert task.skipped >= 2  # the slow third tick overran two slots
    slots = (np.array(times) - times[0]) / period
    phase = slots - np.round(slots)
    # A schedule relative to the previous tick would be half a period off after the overrun.
    assert abs(np.median(phase[3:]) - np.median(phase[:3])) < 0.2


def test_warm_up_runs_the_model_without_counting_it() -> None:
    detector = SileroVAD()
    detector.warm_up()
    assert detector.stats.inferences == 0
