"""Speech stages on whole files: find the utterances, transcribe them, synthesise text.

A Call does the same work live; these run it as fast as the machine allows, for the
`opusagent say` and `opusagent transcribe` commands and for benchmarks.
"""

from __future__ import annotations

import time
import wave
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from opusagent.audio.codecs import decode, encode
from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.audio.resample import AudioConverter
from opusagent.call.stages import STT, TTS, Samples, Transcript
from opusagent.call.turn_policy import TurnPolicy
from opusagent.call.turns import TurnDetector, VoiceChange
from opusagent.voice.vad import SileroVAD

FRAME_S = 0.02


@dataclass(frozen=True, slots=True)
class Segment:
    """Where the VAD heard one utterance, in seconds from the start of the audio."""

    start: float
    end: float


@dataclass(frozen=True, slots=True)
class TimedTranscript:
    segment: Segment
    text: str
    partials: int
    """How many partial results came before the final."""
    final_after_s: float
    """Seconds from the end of the utterance's audio to its final result."""


def read_wav(path: Path) -> tuple[Samples, int]:
    """Mono 16-bit samples and the rate of a PCM WAV file (channels are averaged)."""
    with wave.open(str(path)) as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), np.int16)
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data, rate


def write_wav(path: Path, samples: Samples, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(samples.astype("<i2").tobytes())


def resample(samples: Samples, rate: int, target: int) -> Samples:
    converter = AudioConverter(
        AudioFormat(Encoding.PCM16, rate), AudioFormat(Encoding.PCM16, target)
    )
    head = converter.to_samples(samples.tobytes())
    return np.concatenate([head, converter.flush_samples()])


def telephone(samples: Samples, rate: int) -> Samples:
    """`samples` as a phone line carries them: 8 kHz G.711 mu-law, decoded again."""
    narrow = resample(samples, rate, 8000)
    return decode(encode(narrow, Encoding.MULAW), Encoding.MULAW)


def find_utterances(samples: Samples, vad: SileroVAD, policy: TurnPolicy) -> list[Segment]:
    """Utterances as the Call's turn detector would hear them (samples at the VAD's rate).

    Runs the VAD inline with `step()`, so call it outside a running event loop.
    """
    detector = TurnDetector(policy, vad.window_seconds)
    segments: list[Segment] = []
    start = 0.0

    def on_result(probability: float, stream_time: float) -> None:
        nonlocal start
        change = detector.update(probability)
        if change is VoiceChange.STARTED:
            start = stream_time - detector.voiced_s
        elif change is VoiceChange.ENDED:
            segments.append(Segment(start, stream_time - detector.trailing_silence_s))

    stream = vad.open_stream(on_result)
    stream.push(samples)
    while vad.step():
        pass
    if detector.speaking:
        segments.append(Segment(start, len(samples) / vad.sample_rate))
    stream.close()
    return segments


async def transcribe(
    samples: Samples,
    stt: STT,
    segments: Sequence[Segment],
    *,
    grammar: Sequence[str] | None = None,
    on_partial: Callable[[Transcript], None] | None = None,
) -> list[TimedTranscript]:
    """Transcribe each segment of `samples` (at the STT's input rate) as a call would."""
    rate = stt.input_format.sample_rate
    step = round(FRAME_S * rate)
    stream = stt.open_stream()
    stream.expect(grammar)
    results = aiter(stream.results())
    transcripts: list[TimedTranscript] = []
    try:
        for segment in segments:
            stream.speech_started()
            begin, end = round(segment.start * rate), round(segment.end * rate)
            for offset in range(begin, end, step):
                stream.push(samples[offset : min(offset + step, end)])
            ended = time.perf_counter()
            stream.speech_ended()
            partials = 0
            async for transcript in results:
                if transcript.final:
                    after = time.perf_counter() - ended
                    transcripts.append(TimedTranscript(segment, transcript.text, partials, after))
                    break
                partials += 1
                if on_partial is not None:
                    on_partial(transcript)
    finally:
        await stream.aclose()
    return transcripts


@dataclass(frozen=True, slots=True)
class Synthesis:
    samples: Samples
    rate: int
    first_audio_s: float
    """Seconds from the request to the first audio chunk."""
    seconds: float
    """Seconds the whole synthesis took."""


async def synthesize(tts: TTS, text: str) -> Synthesis:
    """Speak `text` with `tts` and collect the audio at the engine's own rate."""

    async def one_delta() -> AsyncIterator[str]:
        yield text

    began = time.perf_counter()
    first: float | None = None
    pieces: list[Samples] = []
    async for chunk in tts.synthesize(one_delta()):
        first = first if first is not None else time.perf_counter() - began
        pieces.append(np.frombuffer(chunk.audio.data, "<i2").astype(np.int16))
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.int16)
    elapsed = time.perf_counter() - began
    return Synthesis(audio, tts.output_format.sample_rate, first or elapsed, elapsed)
