"""The caller's utterance for a load test: a WAV file or text spoken by the offline synthesiser,
trimmed to its voiced part so a turn's latency counts from the caller's last voiced frame."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np

from opusagent.call.stages import Samples
from opusagent.config import Settings
from opusagent.voice.engines import build_tts
from opusagent.voice.offline import read_wav, synthesize
from opusagent.voice.workers import ModelWorkers

TRIM_WINDOW_S = 0.01
TRIM_BELOW_PEAK_DB = 40.0
"""Windows this far below the loudest window count as silence at either end."""


class SpeechError(ValueError):
    """The caller's utterance could not be read or made."""


def speech_from_wav(path: Path) -> tuple[Samples, int]:
    """Mono int16 samples of `path`, trimmed; `SpeechError` names what is wrong."""
    try:
        samples, rate = read_wav(path)
    except (OSError, EOFError, ValueError, wave.Error) as exc:
        raise SpeechError(f"cannot read {path}: {exc}") from exc
    return _checked(trim(samples, rate), rate, str(path))


def speech_from_text(text: str, settings: Settings) -> tuple[Samples, int]:
    """`text` spoken by the offline synthesiser `settings.tts` names, trimmed."""
    samples, rate = asyncio.run(_say(text, settings))
    return _checked(trim(samples, rate), rate, repr(text))


async def _say(text: str, settings: Settings) -> tuple[Samples, int]:
    workers = ModelWorkers(1)
    try:
        tts = build_tts(settings, workers)
        await asyncio.to_thread(tts.load)
        said = await synthesize(tts, text)
        return said.samples, said.rate
    finally:
        workers.close()


def trim(samples: Samples, rate: int) -> Samples:
    """`samples` without the silence before the first and after the last voiced 10 ms window
    (quieter than the loudest window by `TRIM_BELOW_PEAK_DB`)."""
    window = max(1, round(TRIM_WINDOW_S * rate))
    count = len(samples) // window
    if count == 0:
        return samples[:0]
    frames = samples[: count * window].astype(np.float64).reshape(count, window)
    power = np.mean(np.square(frames), axis=1)
    peak = float(power.max())
    if peak == 0.0:
        return samples[:0]
    voiced = np.flatnonzero(power >= peak * 10 ** (-TRIM_BELOW_PEAK_DB / 10))
    return samples[voiced[0] * window : (voiced[-1] + 1) * window]


def _checked(samples: Samples, rate: int, source: str) -> tuple[Samples, int]:
    if len(samples) == 0:
        raise SpeechError(f"{source} holds no voiced audio")
    return samples, rate
