"""Speech figures on phone audio: pocketsphinx accuracy and speed, TTS time to first audio.

Audio path (section 1 and 2). Every utterance is spoken by the synthesiser itself
(`--voice-engine`, Piper's bundled en_US "joe" voice by default) through the project's
`StreamingTTS` and `offline.synthesize`, as the agent would speak it. It is scaled to -26 dBFS
RMS over its active 20 ms frames (frames within 30 dB of the loudest; about the ITU-T P.56
nominal speech level), resampled to 8 kHz, given 0.5 s of silence before and 1.2 s after,
faint line noise (Gaussian, RMS 16, about -66 dBFS), then `offline.telephone` (G.711 mu-law
encode and decode) and `offline.resample` to 16 kHz, the recogniser's input, as the Call's
converter does. Piper samples its own noise, so its audio (and so the WER) varies a little
from run to run.

Where the recogniser is told that speech starts and ends: the real Silero VAD and the default
`TurnPolicy` run over each clip (inline, as `offline.find_utterances` does) and the stream gets
`speech_started()` right after the 20 ms chunk in which the turn detector said STARTED, and
`speech_ended()` right after the chunk in which it said ENDED (500 ms of silence after the
speech), so the decoder has the pre-roll, the speech and that trailing silence, as in a call.
If the VAD finds several turns in one clip (a pause inside a card number) the first start and
the last end are used and the clip is counted under "split".

Section 1, accuracy. 20 call-centre phrases (banking, healthcare, insurance) and 6 sixteen-digit
card numbers, read as digit words in groups of four ("four nine two nine, one five ..."). Each
is recognised with the generic language model (free speech, `expect(None)`) and in grammar mode
(`expect(PHRASES)` for the phrases, all 20 as one grammar; `expect([digits(16)])` for the
numbers). A transcript and its reference are normalised to words: lower case, punctuation other
than apostrophes removed, fillers in brackets dropped; in digit strings "oh" counts as "zero". A
word error is a substituted, deleted or inserted word in the minimum word-level edit
(Levenshtein) alignment of the transcript against the reference; WER = the sum of those edit
distances over the sum of reference words (so it can exceed 100 %). "off-grammar" counts grammar
mode finals that are not a phrase of the grammar: the grammar result was rejected and the
utterance re-decoded with the language model.

Section 2, speed. One stream (one caller, one decoder process, nothing else running) hears all
utterances in order, phrases then numbers, so the cepstral mean carries from one utterance to the
next as in a call. Two passes per mode:
- paced (the WER and latency figures): the audio before `speech_started()` goes into the
  pre-roll at once (nothing is decoded then); from there each 20 ms chunk is pushed when it has
  been "spoken", at `--pace` times real time (1 = real time, the default), with the event loop
  free in between; after the last chunk `speech_ended()` is called and the time until the final
  transcript comes out of `results()` is "end -> final" (p50/p95 over the utterances);
- unpaced (RTF): the pre-roll, all the speech and `speech_ended()` at once, so the decoder gets
  the utterance in one job; RTF = the sum of (speech_started -> final) over the sum of the audio
  decoded (pre-roll + pushed chunks). "same" counts utterances whose unpaced transcript equals
  the paced one.

Section 3, TTS. 15 reply-like sentences (some with commas, so the first piece may be a clause).
For each engine, per run: a new engine instance over an empty temporary cache folder, loaded and
warmed up (`warm_up()`, one render of "Hello."), then `offline.synthesize` of every sentence one
after another: first audio = request -> first chunk (the engine's split, cache look-ups, the
render of the first piece on `ModelWorkers`), RTF = the whole synthesis over the audio's length.
Pre-rendered: a new instance over another empty folder, `prerender(SENTENCES)`, then
`synthesize` of each sentence: every piece is a memory hit. Each figure is the median over
`--repeats` runs of that run's p50/p95 over the sentences. Piper runs one onnxruntime thread per
render (the project default); the worker pool has 2 threads (the default `inference_workers`).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.metadata
import json
import math
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from machine import cpu_model
from opusagent.call.stages import Samples, Transcript
from opusagent.call.turn_policy import TurnPolicy
from opusagent.call.turns import TurnDetector, VoiceChange
from opusagent.config import Settings
from opusagent.voice.engines import build_tts
from opusagent.voice.offline import resample, synthesize, telephone
from opusagent.voice.stt import PocketsphinxSTT, digits
from opusagent.voice.tts import StreamingTTS
from opusagent.voice.vad import SileroModel, SileroVAD
from opusagent.voice.workers import ModelWorkers

Floats = npt.NDArray[np.float64]
Engine = Literal["piper", "flite", "espeak"]
Kind = Literal["phrases", "digits"]
Mode = Literal["generic", "grammar"]

PHRASES = (
    "I lost my card",
    "I want to speak to an agent",
    "check my balance",
    "yes please",
    "no thank you",
    "book an appointment",
    "cancel my appointment",
    "report a stolen card",
    "pay my bill",
    "transfer money",
    "reset my password",
    "update my address",
    "refill my prescription",
    "talk to a nurse",
    "speak to a doctor",
    "make a claim",
    "check the status of my claim",
    "renew my policy",
    "I have a question about my bill",
    "that's right",
)
CARD_NUMBERS = (
    "4929153608274410",
    "5105105105105100",
    "3714496353984312",
    "6011000990139424",
    "4000056655665556",
    "5555341244441115",
)
SENTENCES = (
    "Sure, I can help you with that.",
    "Your current balance is two hundred and forty dollars.",
    "I have cancelled the card ending in four five one two, and a new one is on its way.",
    "Your appointment is booked for Tuesday at ten thirty in the morning.",
    "Could you please confirm your date of birth?",
    "Thank you for waiting.",
    "I'm sorry, I didn't catch that. Could you say it again?",
    "Your claim has been received and will be reviewed within five working days.",
    "Okay, let me transfer you to an agent now.",
    "Your prescription is ready for pickup at the pharmacy on Main Street.",
    "For security, I need to ask you a few questions first.",
    "Is there anything else I can help you with today?",
    "The payment of fifty dollars was made on the third of March.",
    "Your policy renews on the first of next month, and the premium stays the same.",
    "Goodbye, and have a nice day.",
)
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

TARGET_GRAMMAR_WER = 0.02
TARGET_FINAL_P95_S = 0.150
TARGET_FIRST_AUDIO_P95_S = 0.150
TARGET_PRERENDERED_P95_S = 0.005

STT_RATE = 16_000
CHUNK_S = 0.02
CHUNK = round(CHUNK_S * STT_RATE)
LEVEL_DBFS = -26.0
ACTIVE_RANGE_DB = 30.0
LEAD_S = 0.5
TAIL_S = 1.2
NOISE_RMS = 16.0
FINAL_TIMEOUT_S = 15.0
WORKERS = 2


# --- word error rate -----------------------------------------------------------------------

_FILLER = re.compile(r"[<\[(][^>\])]*[>\])]")
_WORD = re.compile(r"[a-z0-9']+")


def words(text: str, kind: Kind) -> list[str]:
    """`text` as the words WER counts: lower case, no punctuation or fillers; "oh" is "zero"
    in digit strings."""
    found = [w.strip("'") for w in _WORD.findall(_FILLER.sub(" ", text.lower()))]
    found = [w for w in found if w]
    return ["zero" if kind == "digits" and w == "oh" else w for w in found]


def word_edits(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions in the minimum edit from reference to hypothesis."""
    previous = list(range(len(hypothesis) + 1))  # distances from an empty reference prefix
    for i, ref in enumerate(reference, 1):
        current = [i]
        for j, hyp in enumerate(hypothesis, 1):
            current.append(
                min(
                    previous[j] + 1,  # reference word deleted
                    current[j - 1] + 1,  # hypothesis word inserted
                    previous[j - 1] + (ref != hyp),  # match or substitution
                )
            )
        previous = current
    return previous[-1]


# --- engines and phone audio ---------------------------------------------------------------


def make_tts(engine: Engine, workers: ModelWorkers, cache: Path) -> StreamingTTS:
    """A new engine over the cache folder `cache` (empty: every piece is rendered)."""
    return build_tts(Settings(tts=engine, tts_cache_dir=cache), workers)


def spoken_number(number: str) -> str:
    """How a caller reads a card number: digit words in groups of four."""
    names = [DIGIT_NAMES[int(d)] for d in number]
    return ", ".join(" ".join(names[i : i + 4]) for i in range(0, len(names), 4)) + "."


def active_level(samples: Samples, rate: int) -> Floats:
    """`samples` as floats, scaled to `LEVEL_DBFS` RMS over its active 20 ms frames."""
    x = samples.astype(np.float64)
    size = rate // 50
    frames = len(x) // size
    power = (x[: frames * size].reshape(frames, size) ** 2).mean(axis=1)
    level = 10 * np.log10(power + 1e-9)
    active = power[level > level.max() - ACTIVE_RANGE_DB]
    gain = 32768 * 10 ** (LEVEL_DBFS / 20) / math.sqrt(float(active.mean()))
    scaled: Floats = x * gain
    return scaled


def over_the_phone(samples: Samples, rate: int, seed: int) -> Samples:
    """Speech as the recogniser hears it from a call: see the module docstring."""
    narrow = resample(samples, rate, 8000)  # int16 in, int16 out: level it after
    line = np.concatenate(
        [np.zeros(round(LEAD_S * 8000)), active_level(narrow, 8000), np.zeros(round(TAIL_S * 8000))]
    )
    line += np.random.default_rng(seed).normal(0.0, NOISE_RMS, len(line))
    wire = telephone(np.clip(np.round(line), -32768, 32767).astype(np.int16), 8000)
    return resample(wire, 8000, STT_RATE)


@dataclass(frozen=True, slots=True)
class Clip:
    """One utterance as the recogniser gets it."""

    kind: Kind
    reference: str
    samples: Samples
    """16 kHz, lead silence + speech + tail silence."""
    start_chunk: int
    """`speech_started()` comes after this many 20 ms chunks."""
    end_chunk: int
    """`speech_ended()` comes after this many chunks (no audio is pushed after it)."""
    turns: int
    """Turns the VAD found in the clip (1 unless it split the speech)."""

    @property
    def speech_s(self) -> float:
        """Seconds pushed between `speech_started()` and `speech_ended()`."""
        return (self.end_chunk - self.start_chunk) * CHUNK_S


def turn_events(samples: Samples, vad: SileroVAD, policy: TurnPolicy) -> tuple[int, int, int]:
    """(chunks before STARTED, chunks before ENDED, turns) as the Call's turn detector has them.

    Runs the VAD inline with `step()`, so call it outside a running event loop.
    """
    detector = TurnDetector(policy, vad.window_seconds)
    starts: list[float] = []
    ends: list[float] = []

    def on_result(probability: float, stream_time: float) -> None:
        change = detector.update(probability)
        if change is VoiceChange.STARTED:
            starts.append(stream_time)
        elif change is VoiceChange.ENDED:
            ends.append(stream_time)

    stream = vad.open_stream(on_result)
    stream.push(samples)
    while vad.step():
        pass
    stream.close()
    chunks = len(samples) // CHUNK
    if not starts:
        raise RuntimeError("the VAD heard no speech in a clip; is the synthesiser silent?")
    end = ends[-1] if len(ends) == len(starts) else chunks * CHUNK_S
    return (
        math.ceil(starts[0] / CHUNK_S - 1e-9),
        min(chunks, math.ceil(end / CHUNK_S - 1e-9)),
        len(starts),
    )


async def speak_all(engine: Engine, texts: Sequence[str]) -> list[tuple[Samples, int]]:
    workers = ModelWorkers(WORKERS)
    try:
        with tempfile.TemporaryDirectory() as folder:
            tts = make_tts(engine, workers, Path(folder))
            await asyncio.to_thread(tts.warm_up)
            spoken = []
            for text in texts:
                synthesis = await synthesize(tts, text)
                spoken.append((synthesis.samples, synthesis.rate))
            return spoken
    finally:
        workers.close()


def build_clips(engine: Engine) -> list[Clip]:
    items: list[tuple[Kind, str, str]] = [("phrases", p, p) for p in PHRASES]
    items += [
        ("digits", spoken_number(n), " ".join(DIGIT_NAMES[int(d)] for d in n)) for n in CARD_NUMBERS
    ]
    spoken = asyncio.run(speak_all(engine, [text for _, text, _ in items]))
    vad = SileroVAD(SileroModel(threads=1))
    policy = TurnPolicy()
    clips = []
    for seed, ((kind, _, reference), (samples, rate)) in enumerate(zip(items, spoken, strict=True)):
        audio = over_the_phone(samples, rate, seed)
        start, end, turns = turn_events(audio, vad, policy)
        clips.append(Clip(kind, reference, audio, start, end, turns))
    asyncio.run(vad.aclose())
    return clips


# --- sections 1 and 2: pocketsphinx --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Heard:
    text: str
    seconds: float
    """Paced: speech_ended() -> final. Unpaced: speech_started() -> final."""
    audio_s: float
    """Audio the decoder got for the utterance: pre-roll + pushed chunks."""


def grammar_for(kind: Kind) -> list[str]:
    return list(PHRASES) if kind == "phrases" else [digits(16)]


async def hear_all(
    stt: PocketsphinxSTT, clips: Sequence[Clip], mode: Mode, pace: float | None
) -> list[Heard]:
    """One stream hears every clip in order; `pace` None pushes each utterance at once."""
    stream = stt.open_stream()
    finals: asyncio.Queue[tuple[float, Transcript]] = asyncio.Queue()
    preroll_chunks = math.ceil(stt.preroll_samples / CHUNK)

    async def collect() -> None:
        async for transcript in stream.results():
            if transcript.final:
                finals.put_nowait((time.perf_counter(), transcript))

    collector = asyncio.create_task(collect())
    heard: list[Heard] = []
    try:
        for clip in clips:
            stream.expect(None if mode == "generic" else grammar_for(clip.kind))
            chunks = [clip.samples[i : i + CHUNK] for i in range(0, clip.end_chunk * CHUNK, CHUNK)]
            for chunk in chunks[: clip.start_chunk]:
                stream.push(chunk)
            stream.speech_started()
            began = time.perf_counter()
            for k, chunk in enumerate(chunks[clip.start_chunk :]):
                if pace is not None:
                    due = began + (k + 1) * CHUNK_S / pace
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                stream.push(chunk)
            stream.speech_ended()
            ended = time.perf_counter()
            at, final = await asyncio.wait_for(finals.get(), FINAL_TIMEOUT_S)
            audio_s = clip.speech_s + min(clip.start_chunk, preroll_chunks) * CHUNK_S
            heard.append(Heard(final.text, at - (began if pace is None else ended), audio_s))
    finally:
        await stream.aclose()
        await collector
    return heard


@dataclass(frozen=True, slots=True)
class SttRow:
    mode: Mode
    kind: Kind
    utterances: int
    reference_words: int
    word_errors: int
    wer: float
    off_grammar: int
    same_unpaced: int
    rtf: float
    final_p50_s: float
    final_p95_s: float
    final_max_s: float


@dataclass(frozen=True, slots=True)
class Transcribed:
    mode: Mode
    kind: Kind
    reference: str
    paced: str
    unpaced: str
    word_errors: int
    final_s: float


def percentiles(values: Sequence[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(values, np.float64), [50, 95])
    return float(p50), float(p95)


def measure_stt(
    stt: PocketsphinxSTT, clips: Sequence[Clip], pace: float
) -> tuple[list[SttRow], list[Transcribed]]:
    rows: list[SttRow] = []
    transcripts: list[Transcribed] = []
    grammars = {kind: stt.grammar(grammar_for(kind)) for kind in get_args(Kind)}
    for mode in get_args(Mode):
        paced = asyncio.run(hear_all(stt, clips, mode, pace))
        unpaced = asyncio.run(hear_all(stt, clips, mode, None))
        for kind in get_args(Kind):
            picked = [i for i, c in enumerate(clips) if c.kind == kind]
            edits = []
            for i in picked:
                reference = words(clips[i].reference, kind)
                edits.append(word_edits(reference, words(paced[i].text, kind)))
                transcripts.append(
                    Transcribed(
                        mode,
                        kind,
                        clips[i].reference,
                        paced[i].text,
                        unpaced[i].text,
                        edits[-1],
                        paced[i].seconds,
                    )
                )
            reference_words = sum(len(words(clips[i].reference, kind)) for i in picked)
            grammar = grammars[kind]
            off = (
                sum(not grammar.accepts(paced[i].text) for i in picked)
                if mode == "grammar" and grammar is not None
                else 0
            )
            latency = [paced[i].seconds for i in picked]
            p50, p95 = percentiles(latency)
            rows.append(
                SttRow(
                    mode=mode,
                    kind=kind,
                    utterances=len(picked),
                    reference_words=reference_words,
                    word_errors=sum(edits),
                    wer=sum(edits) / reference_words,
                    off_grammar=off,
                    same_unpaced=sum(paced[i].text == unpaced[i].text for i in picked),
                    rtf=sum(unpaced[i].seconds for i in picked)
                    / sum(unpaced[i].audio_s for i in picked),
                    final_p50_s=p50,
                    final_p95_s=p95,
                    final_max_s=max(latency),
                )
            )
    return rows, transcripts


def verdict(value: float, target: float) -> str:
    return "[green]met[/green]" if value <= target else "[red]missed[/red]"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f}" if seconds >= 0.01 else f"{seconds * 1000:.2f}"


def stt_table(rows: Sequence[SttRow], engine: Engine, pace: float) -> Table:
    table = Table(
        title=f"pocketsphinx on {engine} speech over 8 kHz mu-law (paced at {pace:g}x real time)",
        title_justify="left",
    )
    for name in (
        "mode",
        "set",
        "utts",
        "words",
        "errors",
        "WER",
        "target",
        "off-grammar",
        "same",
        "RTF",
        "end->final p50 ms",
        "p95 ms",
        "max ms",
        "target",
    ):
        table.add_column(name, justify="right")
    for r in rows:
        wer_target = (
            f"<= {TARGET_GRAMMAR_WER:.0%} " + verdict(r.wer, TARGET_GRAMMAR_WER)
            if r.mode == "grammar"
            else ""
        )
        table.add_row(
            r.mode,
            r.kind,
            str(r.utterances),
            str(r.reference_words),
            str(r.word_errors),
            f"{r.wer:.1%}",
            wer_target,
            str(r.off_grammar) if r.mode == "grammar" else "",
            f"{r.same_unpaced}/{r.utterances}",
            f"{r.rtf:.3f}",
            ms(r.final_p50_s),
            ms(r.final_p95_s),
            ms(r.final_max_s),
            f"<= {ms(TARGET_FINAL_P95_S)} " + verdict(r.final_p95_s, TARGET_FINAL_P95_S),
        )
    return table


def errors_table(transcripts: Sequence[Transcribed], mode: Mode) -> Table:
    table = Table(title=f"{mode} mode: utterances with word errors", title_justify="left")
    for name in ("set", "reference", "heard"):
        table.add_column(name)
    table.add_column("errors", justify="right")
    for t in transcripts:
        if t.mode == mode and t.word_errors:
            table.add_row(t.kind, t.reference, t.paced or "(nothing)", str(t.word_errors))
    return table


# --- section 3: TTS ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TtsRun:
    first_p50_s: float
    first_p95_s: float
    first_max_s: float
    rtf: float
    audio_s: float
    prerendered_p50_s: float
    prerendered_p95_s: float
    prerender_s: float
    """Time `prerender` took for all the sentences."""


@dataclass(frozen=True, slots=True)
class TtsRow:
    engine: Engine
    sentences: int
    repeats: int
    first_p50_s: float
    first_p95_s: float
    first_max_s: float
    rtf: float
    audio_s: float
    prerendered_p50_s: float
    prerendered_p95_s: float
    prerender_s: float
    runs: list[TtsRun] = field(default_factory=list)


async def tts_run(engine: Engine, workers: ModelWorkers, sentences: Sequence[str]) -> TtsRun:
    with tempfile.TemporaryDirectory() as folder:
        tts = make_tts(engine, workers, Path(folder) / "fresh")
        await asyncio.to_thread(tts.warm_up)
        fresh = [await synthesize(tts, text) for text in sentences]
        tts = make_tts(engine, workers, Path(folder) / "prerendered")
        await asyncio.to_thread(tts.warm_up)
        began = time.perf_counter()
        await tts.prerender(sentences)
        prerender_s = time.perf_counter() - began
        hits = [await synthesize(tts, text) for text in sentences]
    first = [s.first_audio_s for s in fresh]
    p50, p95 = percentiles(first)
    hit50, hit95 = percentiles([s.first_audio_s for s in hits])
    audio_s = sum(len(s.samples) / s.rate for s in fresh)
    return TtsRun(
        first_p50_s=p50,
        first_p95_s=p95,
        first_max_s=max(first),
        rtf=sum(s.seconds for s in fresh) / audio_s,
        audio_s=audio_s,
        prerendered_p50_s=hit50,
        prerendered_p95_s=hit95,
        prerender_s=prerender_s,
    )


def measure_tts(engine: Engine, sentences: Sequence[str], repeats: int) -> TtsRow:
    async def runs() -> list[TtsRun]:
        workers = ModelWorkers(WORKERS)
        try:
            return [await tts_run(engine, workers, sentences) for _ in range(repeats)]
        finally:
            workers.close()

    done = asyncio.run(runs())

    def median(value: Callable[[TtsRun], float]) -> float:
        return float(np.median([value(run) for run in done]))

    return TtsRow(
        engine=engine,
        sentences=len(sentences),
        repeats=repeats,
        first_p50_s=median(lambda r: r.first_p50_s),
        first_p95_s=median(lambda r: r.first_p95_s),
        first_max_s=median(lambda r: r.first_max_s),
        rtf=median(lambda r: r.rtf),
        audio_s=median(lambda r: r.audio_s),
        prerendered_p50_s=median(lambda r: r.prerendered_p50_s),
        prerendered_p95_s=median(lambda r: r.prerendered_p95_s),
        prerender_s=median(lambda r: r.prerender_s),
        runs=done,
    )


def tts_table(rows: Sequence[TtsRow], title: str, detail: bool) -> Table:
    table = Table(title=title, title_justify="left")
    names = ["engine", "first audio p50 ms", "p95 ms"]
    names += ["max ms", "target"] if detail else []
    names += ["RTF"]
    names += ["audio s", "prerender s"] if detail else []
    names += ["pre-rendered p50 ms", "p95 ms"]
    names += ["target"] if detail else []
    for name in names:
        table.add_column(name, justify="right")
    for r in rows:
        cells = [r.engine, ms(r.first_p50_s), ms(r.first_p95_s)]
        if detail:
            cells += [
                ms(r.first_max_s),
                f"<= {ms(TARGET_FIRST_AUDIO_P95_S)} "
                + verdict(r.first_p95_s, TARGET_FIRST_AUDIO_P95_S),
            ]
        cells += [f"{r.rtf:.3f}"]
        if detail:
            cells += [f"{r.audio_s:.1f}", f"{r.prerender_s:.2f}"]
        cells += [ms(r.prerendered_p50_s), ms(r.prerendered_p95_s)]
        if detail:
            cells += [
                f"<= {ms(TARGET_PRERENDERED_P95_S)} "
                + verdict(r.prerendered_p95_s, TARGET_PRERENDERED_P95_S)
            ]
        table.add_row(*cells)
    return table


# --- main ----------------------------------------------------------------------------------


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def program_version(argv: Sequence[str], pattern: str) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False).stdout
    except OSError:
        return "missing"
    match = re.search(pattern, out)
    return match.group(1) if match else "?"


def machine_facts() -> dict[str, str]:
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu_model(),
        "python": platform.python_version(),
        "pocketsphinx": version("pocketsphinx"),
        "piper-tts": version("piper-tts"),
        "onnxruntime": version("onnxruntime"),
        "flite": program_version(["flite", "--version"], r"version: flite-(\S+)"),
        "espeak-ng": program_version(["espeak-ng", "--version"], r"speech: (\S+)"),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--voice-engine",
        choices=get_args(Engine),
        default="piper",
        help="synthesiser that speaks the caller's utterances (default piper)",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=1.0,
        help="speed of the paced STT pass, times real time (default 1: real time)",
    )
    parser.add_argument(
        "--tts-engines",
        default="piper,flite,espeak",
        type=lambda s: [e for e in s.split(",") if e],
        help="synthesisers timed in section 3 (default piper,flite,espeak)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="TTS runs per figure (median)")
    parser.add_argument(
        "--transcripts", action="store_true", help="print every transcript, not only the errors"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tts_engines) - set(get_args(Engine)))
    if unknown:
        parser.error(f"unknown TTS engines: {', '.join(unknown)}")
    if args.pace <= 0:
        parser.error("--pace must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)
    facts = machine_facts()
    console.print("[bold]voice[/bold]  " + "  ".join(f"{k}: {v}" for k, v in facts.items()))
    began = time.perf_counter()

    clips = build_clips(args.voice_engine)
    audio_s = sum(len(c.samples) for c in clips) / STT_RATE
    split = sum(c.turns > 1 for c in clips)
    console.print(
        f"caller audio: {len(PHRASES)} phrases and {len(CARD_NUMBERS)} card numbers spoken by "
        f"{args.voice_engine}, {audio_s:.1f} s with lead/tail silence, "
        f"{sum(c.speech_s for c in clips):.1f} s between speech_started and speech_ended; "
        f"VAD split {split} clip(s) into several turns "
        f"(made in {time.perf_counter() - began:.0f} s)"
    )

    workers = ModelWorkers(WORKERS)
    stt = PocketsphinxSTT(workers, decoders=1)
    stt.load()
    try:
        stt_rows, transcripts = measure_stt(stt, clips, args.pace)
    finally:
        stt.close()
        workers.close()
    console.print(stt_table(stt_rows, args.voice_engine, args.pace))
    console.print(
        "WER: word edits / reference words (paced pass). off-grammar: grammar finals that are no "
        "phrase (language-model fallback). same: unpaced transcript equals the paced one. RTF: "
        "unpaced speech_started -> final over the audio decoded. end->final: speech_ended() -> "
        "final, paced pass; one stream, one decoder process, utterances one after another."
    )
    if args.transcripts:
        table = Table(title="every transcript (paced pass)", title_justify="left")
        for name in ("mode", "set", "reference", "heard", "unpaced", "errors", "final ms"):
            table.add_column(name)
        for t in transcripts:
            table.add_row(
                t.mode,
                t.kind,
                t.reference,
                t.paced,
                "=" if t.unpaced == t.paced else t.unpaced,
                str(t.word_errors),
                ms(t.final_s),
            )
        console.print(table)
    else:
        console.print(errors_table(transcripts, "grammar"))
    console.print(f"STT done at {time.perf_counter() - began:.0f} s")

    tts_rows = [measure_tts(engine, SENTENCES, args.repeats) for engine in args.tts_engines]
    title = (
        f"TTS, {len(SENTENCES)} fresh sentences (cold cache) and the same pre-rendered; "
        f"median of {args.repeats} runs"
    )
    detailed = [r for r in tts_rows if r.engine == "piper"]
    others = [r for r in tts_rows if r.engine != "piper"]
    if detailed:
        console.print(tts_table(detailed, title, detail=True))
    if others:
        console.print(tts_table(others, "TTS, the command-line engines (same runs)", detail=False))
    console.print(
        "first audio: synthesize() request -> first chunk, engine loaded and warmed up, empty "
        "cache. RTF: whole synthesis / audio length. prerender s: prerender() of all sentences. "
        "pre-rendered: synthesize() of a sentence whose pieces are all in the memory cache."
    )
    console.print(f"done in {time.perf_counter() - began:.0f} s")

    if args.json is not None:
        report = {
            "machine": facts,
            "voice_engine": args.voice_engine,
            "pace": args.pace,
            "repeats": args.repeats,
            "targets": {
                "grammar_wer": TARGET_GRAMMAR_WER,
                "final_p95_s": TARGET_FINAL_P95_S,
                "first_audio_p95_s": TARGET_FIRST_AUDIO_P95_S,
                "prerendered_p95_s": TARGET_PRERENDERED_P95_S,
            },
            "clips": [
                {
                    "kind": c.kind,
                    "reference": c.reference,
                    "speech_s": c.speech_s,
                    "turns": c.turns,
                }
                for c in clips
            ],
            "stt": [asdict(r) for r in stt_rows],
            "transcripts": [asdict(t) for t in transcripts],
            "tts": [asdict(r) for r in tts_rows],
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
