"""Per-frame CPU cost of a call's inbound path, and what batching the Silero VAD saves.

Section 1 builds N real `Call`s (mu-law 8 kHz in and out, marks acknowledged like Twilio) that
share one real `SileroVAD` (onnxruntime, one thread), with a null STT whose `push` does
nothing, an agent that says nothing and `FakeTTS`. Every call hears the same espeak-ng
sentences with pauses between them (so its turn detector sees speech start and end), each from
its own offset and after its own untimed pre-roll of 0-23 frames, so calls are in phase neither
in content nor in the resampler's output bursts. For every 20 ms frame index each call gets
`Call.handle(CallerAudio(...))`; whenever another 32 ms per stream has arrived,
`SileroVAD.step()` runs one batched inference over every stream with a window pending (and
catch-up rounds), as the scheduler does, but inline and without its timer. Figures are CPU
time (`process_time`) per call-frame:

- handle: all of `Call.handle` (decode mu-law, resample 8 -> 16 kHz, quality meter, VAD
  stream push, STT push);
- VAD step: all of `step()` divided by call-frames, result callbacks included. It is split
  into the model alone (the batch sizes the warm-up pass ran, re-run on `SileroModel.run`),
  the turn policy (each call's recorded probabilities replayed, tick by tick, into the real
  callback the call registered through the VAD protocol, so `Call._on_vad` with its timers)
  and the rest (collecting windows, scaling, state copies, dispatch: step minus the two).

Not measured: the bridge (websocket, JSON, base64), a real STT, the outbound path and the
event-loop work between frames (timers firing, mark acks, the sender task): the loop gets a
turn after every frame index, outside the timed regions. Each timed region pays two pairs of
clock reads (about 0.35 us), which shows only at one call.

Section 2 times, for B streams, one batched `SileroModel.run` per tick against one run per
stream, and the whole `SileroVAD.step()` (collect, infer, deliver) per stream-window.

Every figure is the median of `--repeats` timed runs, after a warm-up run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnxruntime
from rich.console import Console
from rich.table import Table

from machine import cpu_model
from opusagent.audio.formats import MULAW_8K, PCM16_16K, AudioChunk, AudioFormat, Encoding
from opusagent.audio.resample import AudioConverter
from opusagent.call.call import Call, Stages
from opusagent.call.events import CallerAudio, CallMedia, CallOutput, Mark, MarkAcknowledged
from opusagent.call.stages import VAD, Samples, Transcript, VadCallback, VADStream
from opusagent.call.turn_policy import TurnPolicy
from opusagent.call.turns import TurnDetector, VoiceChange
from opusagent.testing.fakes import FakeTTS, ScriptedAgent
from opusagent.voice.vad.silero import (
    INPUT_SAMPLES,
    STATE_SIZE,
    WINDOW_SAMPLES,
    WINDOW_SECONDS,
    Floats,
    SileroModel,
    SileroStream,
    SileroVAD,
)

FRAME_MS = 20
WINDOW_MS = round(WINDOW_SECONDS * 1000)
FRAME_US = FRAME_MS * 1000
TARGET_CALLS = 500
TARGET_US = 60.0
MEDIA = CallMedia(MULAW_8K, MULAW_8K, marks=True)
FRAME_BYTES = MULAW_8K.bytes_for(FRAME_MS / 1000)
MAX_ROUNDS = 4
"""Windows a stream may catch up per VAD tick (the scheduler's default, set explicitly)."""
PREROLL_FRAMES = 24
"""Calls get 0..23 untimed frames first: soxr's 8 -> 16 kHz stream emits in ~59 ms bursts."""

SENTENCES = (
    "Hello, I am calling about the bill I got this morning.",
    "Yes, that is right.",
    "Could you please transfer me to someone in billing?",
    "My account number is four seven two nine one.",
    "No, I already tried that twice.",
    "Thank you, goodbye.",
)
PAUSES_S = (0.9, 1.6, 0.7, 1.2, 2.0, 1.0)
"""Silence after each sentence; all exceed the 500 ms end of turn, so each sentence is a turn."""
LEAD_SILENCE_S = 0.6
NOISE_RMS = 20.0
"""Line noise under everything (about -64 dBFS), so silence is not digital zero."""


# --- stages --------------------------------------------------------------------------------


class NullSTTStream:
    """An STT stream that costs nothing: it ignores audio and yields nothing until closed."""

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    def push(self, samples: Samples) -> None:
        pass

    def speech_started(self) -> None:
        pass

    def speech_ended(self) -> None:
        pass

    def expect(self, phrases: Sequence[str] | None) -> None:
        pass

    async def results(self) -> AsyncIterator[Transcript]:
        await self._closed.wait()
        nothing: tuple[Transcript, ...] = ()
        for transcript in nothing:  # makes this an async generator that yields nothing
            yield transcript

    async def aclose(self) -> None:
        self._closed.set()


class NullSTT:
    @property
    def input_format(self) -> AudioFormat:
        return PCM16_16K

    def open_stream(self) -> NullSTTStream:
        return NullSTTStream()


class RecordingVAD:
    """Forwards to the real VAD; keeps every stream's probabilities and every step's batches.

    Used for the warm-up pass only, so the timed passes run on `SileroVAD` itself.
    """

    def __init__(self, vad: SileroVAD) -> None:
        self._vad = vad
        self._streams: list[SileroStream] = []
        self._skip: list[int] = []
        self._probabilities: list[list[float]] = []
        self.batches: list[int] = []
        """Batch size of every inference the timed steps ran, in order."""

    @property
    def sample_rate(self) -> int:
        return self._vad.sample_rate

    @property
    def window_seconds(self) -> float:
        return self._vad.window_seconds

    def open_stream(self, on_result: VadCallback) -> VADStream:
        record: list[float] = []
        self._probabilities.append(record)

        def on_recorded(probability: float, stream_time: float) -> None:
            record.append(probability)
            on_result(probability, stream_time)

        stream = self._vad.open_stream(on_recorded)
        self._streams.append(stream)
        return stream

    def begin(self) -> None:
        """The timed part starts: results before this (the pre-roll) are not replayed."""
        self._skip = [len(p) for p in self._probabilities]

    def before_step(self) -> None:
        """Note the batches the coming step will run: round r takes streams with > r pending."""
        pending = [s.pending_windows for s in self._streams if not s.closed]
        for r in range(MAX_ROUNDS):
            batch = sum(p > r for p in pending)
            if not batch:
                break
            self.batches.append(batch)

    @property
    def probabilities(self) -> list[list[float]]:
        """Each stream's probabilities during the timed part."""
        return [p[skip:] for p, skip in zip(self._probabilities, self._skip, strict=True)]


class _DeafStream:
    def push(self, samples: Samples) -> None:
        pass

    def close(self) -> None:
        pass


class CapturingVAD:
    """A VAD that hears nothing but keeps each stream's callback, to replay results into it."""

    def __init__(self) -> None:
        self.callbacks: list[VadCallback] = []

    @property
    def sample_rate(self) -> int:
        return PCM16_16K.sample_rate

    @property
    def window_seconds(self) -> float:
        return WINDOW_SECONDS

    def open_stream(self, on_result: VadCallback) -> VADStream:
        self.callbacks.append(on_result)
        return _DeafStream()


class TwilioLikeLine:
    """The bridge side of one call: drops outputs, acknowledges each mark on the next turn."""

    def __init__(self) -> None:
        self.call: Call | None = None

    async def send(self, output: CallOutput) -> None:
        if isinstance(output, Mark) and self.call is not None:
            asyncio.get_running_loop().call_soon(self.call.handle, MarkAcknowledged(output.name))


def build_calls(count: int, vad: VAD) -> list[Call]:
    """Build calls outside any running loop.

    `SileroVAD.open_stream` starts its scheduler when it runs inside a loop, and `step()` may
    not run while the scheduler does; so the streams must be opened before the loop starts.
    """
    calls = []
    for i in range(count):
        line = TwilioLikeLine()
        stages = Stages(vad, NullSTT(), ScriptedAgent(lambda turn: []), FakeTTS())
        line.call = Call(f"bench-{i}", MEDIA, stages, line.send)
        calls.append(line.call)
    return calls


# --- audio ---------------------------------------------------------------------------------


def synthesize_speech(seed: int = 7) -> bytes:
    """espeak-ng sentences separated by pauses, over faint noise, as mu-law 8 kHz frames."""
    if shutil.which("espeak-ng") is None:
        sys.exit("espeak-ng is not installed (apt-get install espeak-ng)")
    pieces: list[Samples] = []
    rate = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, text in enumerate(SENTENCES):
            path = Path(tmp) / f"s{i}.wav"
            subprocess.run(["espeak-ng", "-w", str(path), text], check=True)
            with wave.open(str(path)) as wav:
                rate = wav.getframerate()
                pieces.append(np.frombuffer(wav.readframes(wav.getnframes()), np.int16))
    timeline: list[Samples] = [np.zeros(round(LEAD_SILENCE_S * rate), np.int16)]
    for speech, pause in zip(pieces, PAUSES_S, strict=True):
        timeline += [speech, np.zeros(round(pause * rate), np.int16)]
    clean = np.concatenate(timeline).astype(np.float64)
    noise = np.random.default_rng(seed).normal(0.0, NOISE_RMS, len(clean))
    pcm = np.clip(clean + noise, -32768, 32767).astype(np.int16)
    to_wire = AudioConverter(AudioFormat(Encoding.PCM16, rate), MULAW_8K)
    wire = to_wire.to_bytes(pcm.tobytes()) + to_wire.flush_bytes()
    return wire[: len(wire) // FRAME_BYTES * FRAME_BYTES]


def listening_samples(wire: bytes) -> Samples:
    """The clip as the calls hear it: 16 kHz samples through the project's converter."""
    converter = AudioConverter(MULAW_8K, PCM16_16K)
    return np.concatenate([converter.to_samples(wire), converter.flush_samples()])


# --- section 1: inbound path ---------------------------------------------------------------


@dataclass(slots=True)
class PassTimes:
    """Seconds spent in the timed part of one pass, and the inferences run in it."""

    handle_cpu: float = 0.0
    handle_wall: float = 0.0
    step_cpu: float = 0.0
    step_wall: float = 0.0
    inferences: int = 0


async def drive(
    calls: Sequence[Call],
    prerolls: Sequence[Sequence[CallerAudio]],
    feeds: Sequence[Sequence[CallerAudio]],
    vad: SileroVAD,
    probe: RecordingVAD | None = None,
) -> PassTimes:
    """Start the calls, pre-roll them (untimed), then time every frame and VAD step; close.

    The pre-roll gives each call a different number of frames so that the resampler's output
    bursts, hence the VAD's pending windows, are not in phase across calls.
    """
    for call in calls:
        await call.start()
    for call, preroll in zip(calls, prerolls, strict=True):
        for event in preroll:
            call.handle(event)
    while vad.step():
        pass
    await asyncio.sleep(0)
    if probe is not None:
        probe.begin()
    times = PassTimes()
    inferences = vad.stats.inferences
    ticks = 0
    cpu, wall = time.process_time, time.perf_counter
    for f in range(len(feeds[0])):
        c0, w0 = cpu(), wall()
        for call, feed in zip(calls, feeds, strict=True):
            call.handle(feed[f])
        c1, w1 = cpu(), wall()
        times.handle_cpu += c1 - c0
        times.handle_wall += w1 - w0
        due = (f + 1) * FRAME_MS // WINDOW_MS
        while ticks < due:
            if probe is not None:
                probe.before_step()
            c0, w0 = cpu(), wall()
            vad.step()
            c1, w1 = cpu(), wall()
            times.step_cpu += c1 - c0
            times.step_wall += w1 - w0
            ticks += 1
        await asyncio.sleep(0)  # the loop's turn: timers, mark acks, sender tasks (untimed)
    times.inferences = vad.stats.inferences - inferences
    for call in calls:
        await call.aclose()
    return times


async def replay_turn_policy(
    calls: Sequence[Call], callbacks: Sequence[VadCallback], probabilities: Sequence[list[float]]
) -> float:
    """CPU seconds to deliver the recorded probabilities, tick by tick, to the calls' callbacks."""
    for call in calls:
        await call.start()
    await asyncio.sleep(0)
    spent = 0.0
    ticks = max(len(p) for p in probabilities)
    for k in range(ticks):
        t = (k + 1) * WINDOW_SECONDS
        c0 = time.process_time()
        for on_result, record in zip(callbacks, probabilities, strict=True):
            if k < len(record):
                on_result(record[k], t)
        spent += time.process_time() - c0
        await asyncio.sleep(0)
    for call in calls:
        await call.aclose()
    return spent


def inference_only(model: SileroModel, samples: Samples, batches: Sequence[int]) -> float:
    """CPU seconds for `SileroModel.run` alone on the given batch sizes, in order."""
    rng = np.random.default_rng(3)
    spent = 0.0
    for batch in batches:
        windows = speech_windows(samples, rng, batch)
        state = np.zeros((2, batch, STATE_SIZE), np.float32)
        c0 = time.process_time()
        model.run(windows, state)
        spent += time.process_time() - c0
    return spent


def speech_windows(samples: Samples, rng: np.random.Generator, batch: int) -> Floats:
    """`batch` model inputs (context + window, scaled) cut from the clip at random places."""
    starts = rng.integers(0, len(samples) - INPUT_SAMPLES, batch)
    rows: Floats = samples[starts[:, None] + np.arange(INPUT_SAMPLES)].astype(np.float32)
    rows *= np.float32(1 / 32768)
    return rows


@dataclass(frozen=True, slots=True)
class InboundRow:
    calls: int
    call_frames: int
    total_us: float
    total_wall_us: float
    handle_us: float
    vad_step_us: float
    inference_us: float
    turn_policy_us: float
    vad_rest_us: float
    core_share: float
    mean_batch: float
    speech_starts_per_call: float
    speech_ends_per_call: float


def count_turns(probabilities: Sequence[list[float]]) -> tuple[float, float]:
    """Mean speech starts and ends per call that the turn detector sees in the recordings."""
    starts = ends = 0
    for record in probabilities:
        detector = TurnDetector(TurnPolicy(), WINDOW_SECONDS)
        for p in record:
            change = detector.update(p)
            starts += change is VoiceChange.STARTED
            ends += change is VoiceChange.ENDED
    return starts / len(probabilities), ends / len(probabilities)


def measure_inbound(
    count: int,
    events: Sequence[CallerAudio],
    listening: Samples,
    frames: int,
    repeats: int,
    vad: SileroVAD,
    model: SileroModel,
) -> InboundRow:
    rng = np.random.default_rng(count)
    offsets = [0] if count == 1 else rng.integers(0, len(events), count).tolist()
    lengths = [0] if count == 1 else rng.integers(0, PREROLL_FRAMES, count).tolist()
    prerolls = [
        [events[(off - n + f) % len(events)] for f in range(n)]
        for off, n in zip(offsets, lengths, strict=True)
    ]
    feeds = [[events[(off + f) % len(events)] for f in range(frames)] for off in offsets]

    # Warm-up pass, which also records what the VAD tells every call and the batches it runs.
    probe = RecordingVAD(vad)
    asyncio.run(drive(build_calls(count, probe), prerolls, feeds, vad, probe))
    probabilities = probe.probabilities

    passes = []
    for _ in range(repeats):
        times = asyncio.run(drive(build_calls(count, vad), prerolls, feeds, vad))
        if times.inferences != len(probe.batches):
            raise RuntimeError(
                f"{count} calls: a timed pass ran {times.inferences} inferences, "
                f"the warm-up pass {len(probe.batches)}; the passes are not alike"
            )
        passes.append(times)
    policy = []
    for _ in range(repeats):
        capture = CapturingVAD()
        calls = build_calls(count, capture)
        policy.append(asyncio.run(replay_turn_policy(calls, capture.callbacks, probabilities)))
    inference = [inference_only(model, listening, probe.batches) for _ in range(repeats)]

    call_frames = count * frames
    us = 1e6 / call_frames
    handle = statistics.median(p.handle_cpu for p in passes) * us
    step = statistics.median(p.step_cpu for p in passes) * us
    wall = statistics.median(p.handle_wall + p.step_wall for p in passes) * us
    infer = statistics.median(inference) * us
    turn = statistics.median(policy) * us
    starts, ends = count_turns(probabilities)
    return InboundRow(
        calls=count,
        call_frames=call_frames,
        total_us=handle + step,
        total_wall_us=wall,
        handle_us=handle,
        vad_step_us=step,
        inference_us=infer,
        turn_policy_us=turn,
        vad_rest_us=step - infer - turn,
        core_share=(handle + step) / FRAME_US,
        mean_batch=statistics.fmean(probe.batches) if probe.batches else 0.0,
        speech_starts_per_call=starts,
        speech_ends_per_call=ends,
    )


def target_verdict(row: InboundRow) -> str:
    if row.calls != TARGET_CALLS:
        return ""
    met = row.total_us <= TARGET_US
    return f"<= {TARGET_US:g} " + ("[green]met[/green]" if met else "[red]missed[/red]")


def inbound_table(rows: Sequence[InboundRow], seconds: float) -> Table:
    table = Table(
        title=f"Inbound path, CPU us per call-frame (20 ms; {seconds:g} s of audio per call)",
        title_justify="left",
    )
    for name in (
        "calls",
        "total",
        "target",
        "wall",
        "handle",
        "VAD step",
        "model",
        "policy",
        "rest",
        "core/call",
        "calls/core",
        "batch",
        "starts/ends",
    ):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r.calls),
            f"{r.total_us:.1f}",
            target_verdict(r),
            f"{r.total_wall_us:.1f}",
            f"{r.handle_us:.1f}",
            f"{r.vad_step_us:.1f}",
            f"{r.inference_us:.1f}",
            f"{r.turn_policy_us:.2f}",
            f"{r.vad_rest_us:.2f}",
            f"{r.core_share:.2%}",
            f"{1 / r.core_share:.0f}",
            f"{r.mean_batch:.0f}",
            f"{r.speech_starts_per_call:.1f}/{r.speech_ends_per_call:.1f}",
        )
    return table


# --- section 2: batched vs unbatched VAD ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class VadRow:
    streams: int
    windows: int
    step_us: float
    batched_us: float
    unbatched_us: float

    @property
    def ratio(self) -> float:
        return self.unbatched_us / self.batched_us


def _ignore(probability: float, stream_time: float) -> None:
    pass


def time_step(vad: SileroVAD, streams: int, ticks: int, samples: Samples) -> float:
    """CPU seconds in `SileroVAD.step()` for `ticks` ticks of `streams` streams."""
    opened = [vad.open_stream(_ignore) for _ in range(streams)]
    stride = max(1, (len(samples) - WINDOW_SAMPLES) // streams)
    spent = 0.0
    for t in range(ticks):
        for i, stream in enumerate(opened):
            start = (i * stride + t * WINDOW_SAMPLES) % (len(samples) - WINDOW_SAMPLES)
            stream.push(samples[start : start + WINDOW_SAMPLES])
        c0 = time.process_time()
        vad.step()
        spent += time.process_time() - c0
    for stream in opened:
        stream.close()
    return spent


def time_model(model: SileroModel, inputs: Floats, batched: bool) -> float:
    """CPU seconds for `inputs` [ticks, B, 576]: one run per tick, or one run per stream."""
    ticks, streams, _ = inputs.shape
    spent = 0.0
    if batched:
        state = np.zeros((2, streams, STATE_SIZE), np.float32)
        for t in range(ticks):
            c0 = time.process_time()
            _, state = model.run(inputs[t], state)
            spent += time.process_time() - c0
        return spent
    states = [np.zeros((2, 1, STATE_SIZE), np.float32) for _ in range(streams)]
    for t in range(ticks):
        c0 = time.process_time()
        for i in range(streams):
            _, states[i] = model.run(inputs[t, i : i + 1], states[i])
        spent += time.process_time() - c0
    return spent


def measure_vad(
    streams: int, vad: SileroVAD, model: SileroModel, samples: Samples, repeats: int
) -> VadRow:
    ticks = max(10, 2000 // streams)
    rng = np.random.default_rng(streams)
    inputs = np.stack([speech_windows(samples, rng, streams) for _ in range(ticks)])
    time_step(vad, streams, 1, samples)  # warm-up
    time_model(model, inputs[:1], batched=True)
    time_model(model, inputs[:1], batched=False)
    windows = streams * ticks
    us = 1e6 / windows

    def median(run: Callable[[], float]) -> float:
        return statistics.median(run() for _ in range(repeats)) * us

    return VadRow(
        streams=streams,
        windows=windows,
        step_us=median(lambda: time_step(vad, streams, ticks, samples)),
        batched_us=median(lambda: time_model(model, inputs, batched=True)),
        unbatched_us=median(lambda: time_model(model, inputs, batched=False)),
    )


def vad_table(rows: Sequence[VadRow]) -> Table:
    table = Table(
        title="Silero VAD, CPU us per stream-window (32 ms), one onnxruntime thread",
        title_justify="left",
    )
    for name in (
        "streams",
        "windows",
        "step() batched",
        "run() batched",
        "run() per stream",
        "per stream / batched",
    ):
        table.add_column(name, justify="right")
    for r in rows:
        table.add_row(
            str(r.streams),
            str(r.windows),
            f"{r.step_us:.1f}",
            f"{r.batched_us:.1f}",
            f"{r.unbatched_us:.1f}",
            f"{r.ratio:.1f}x",
        )
    return table


# --- main ----------------------------------------------------------------------------------


def machine_facts() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--calls",
        default="1,100,500",
        type=lambda s: [int(n) for n in s.split(",")],
        help="simulated call counts, also the VAD stream counts (default 1,100,500)",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per call (default 10)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per figure (median)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 132)
    facts = machine_facts()
    console.print("[bold]frame_path[/bold]  " + "  ".join(f"{k}: {v}" for k, v in facts.items()))
    console.print(f"median of {args.repeats} timed runs per figure, after a warm-up run")

    began = time.perf_counter()
    wire = synthesize_speech()
    events = [
        CallerAudio(AudioChunk(wire[i : i + FRAME_BYTES], MULAW_8K))
        for i in range(0, len(wire), FRAME_BYTES)
    ]
    listening = listening_samples(wire)
    frames = round(args.seconds * 1000 / FRAME_MS)
    console.print(
        f"audio: {len(SENTENCES)} espeak-ng sentences with pauses, {len(wire) / 8000:.1f} s "
        f"looped; each call starts at its own offset"
    )

    model = SileroModel(threads=1)
    vad = SileroVAD(model, max_rounds=MAX_ROUNDS)
    vad.warm_up()

    inbound = [
        measure_inbound(n, events, listening, frames, args.repeats, vad, model) for n in args.calls
    ]
    console.print(inbound_table(inbound, args.seconds))
    console.print(
        "total = handle + VAD step; target: <= 60 us per call-frame at 500 calls. wall: "
        "perf_counter total. handle: decode + resample + quality + VAD/STT push. VAD step = "
        "model (same batches re-run on SileroModel.run) + policy (recorded probabilities "
        "replayed into each call's VAD callback, i.e. Call._on_vad) + rest (collect, scale, "
        "state, dispatch). core/call: total / 20 000 us. batch: mean streams per inference. "
        "starts/ends: speech starts and ends per call seen by the turn detector."
    )

    vad_rows = [measure_vad(n, vad, model, listening, args.repeats) for n in args.calls]
    console.print(vad_table(vad_rows))
    asyncio.run(vad.aclose())
    elapsed = time.perf_counter() - began
    console.print(f"done in {elapsed:.0f} s")

    if args.json is not None:
        report = {
            "machine": facts,
            "seconds_per_call": args.seconds,
            "repeats": args.repeats,
            "target": {"calls": TARGET_CALLS, "us_per_call_frame": TARGET_US},
            "inbound": [asdict(r) for r in inbound],
            "vad": [asdict(r) | {"ratio": r.ratio} for r in vad_rows],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
