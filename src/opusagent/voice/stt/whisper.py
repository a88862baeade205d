"""Whisper with faster-whisper (CTranslate2), from a model folder on disk; never downloads.

Needs the `whisper` extra, imported only when the model loads. Whisper is not streaming: a
stream keeps the utterance from `speech_started` (with a short pre-roll) to `speech_ended` and
transcribes it then on `ModelWorkers`, so it gives finals only.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import math
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from opusagent.audio.formats import PCM16_16K, AudioFormat
from opusagent.call.stages import Samples, Transcript
from opusagent.voice.stt.errors import STTUnavailableError
from opusagent.voice.stt.grammar import without_digits
from opusagent.voice.stt.preroll import PreRoll
from opusagent.voice.workers import ModelWorkers

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MODEL_FILES = ("model.bin", "config.json")
"""What a CTranslate2 Whisper folder must hold (besides its tokenizer and vocabulary)."""
_INSTALL = (
    "install the whisper extra: pip install 'opusagent[whisper]' (or uv sync --extra whisper)"
)


class _Segment(Protocol):
    text: str
    avg_logprob: float


class _WhisperModel(Protocol):
    def transcribe(
        self, audio: npt.NDArray[np.float32], **options: Any
    ) -> tuple[Iterable[_Segment], object]: ...


def check_model_dir(folder: Path) -> None:
    """Raise `STTUnavailableError` unless `folder` holds a CTranslate2 Whisper model."""
    if not folder.is_dir():
        raise STTUnavailableError(
            f"Whisper model folder {folder} does not exist: set OPUSAGENT_WHISPER_MODEL_DIR to a "
            "folder holding a CTranslate2 Whisper model (models are never downloaded)"
        )
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if missing:
        raise STTUnavailableError(
            f"Whisper model folder {folder} holds no CTranslate2 model (missing "
            f"{', '.join(missing)}): put a faster-whisper model there, e.g. one converted with "
            "ct2-transformers-converter"
        )


class WhisperSTT:
    """Whisper from `model_dir` (an `STT`); call `load()` (blocking, on a worker) at start-up."""

    def __init__(
        self,
        workers: ModelWorkers,
        model_dir: Path,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        language: str | None = "en",
        beam_size: int = 1,
        preroll_ms: int = 300,
        max_utterance_s: float = 30.0,
    ) -> None:
        self.workers = workers
        self.model_dir = model_dir
        self.preroll_samples = SAMPLE_RATE * preroll_ms // 1000
        self.max_utterance_samples = round(SAMPLE_RATE * max_utterance_s)
        self._device = device
        self._compute_type = compute_type
        self._options: dict[str, Any] = {
            "language": language,
            "beam_size": beam_size,
            "vad_filter": False,  # the call's VAD already cut the utterance
            "condition_on_previous_text": False,
            "without_timestamps": True,
        }
        self._model: _WhisperModel | None = None
        self._lock = threading.Lock()

    @property
    def input_format(self) -> AudioFormat:
        return PCM16_16K

    def load(self) -> None:
        """Load the model and transcribe a second of silence. Blocking."""
        self.transcribe(np.zeros(SAMPLE_RATE, np.int16))

    def transcribe(self, samples: Samples, prompt: str | None = None) -> Transcript:
        """The final transcript of one utterance (blocking; run it on a worker)."""
        audio = samples.astype(np.float32) / 32768.0
        segments, _ = self._loaded().transcribe(audio, initial_prompt=prompt, **self._options)
        parts = list(segments)
        text = "".join(s.text for s in parts).strip()
        if not parts:
            return Transcript(text, final=True)
        mean_logprob = sum(s.avg_logprob for s in parts) / len(parts)
        return Transcript(text, final=True, confidence=math.exp(mean_logprob))

    def open_stream(self) -> WhisperStream:
        return WhisperStream(self)

    def _loaded(self) -> _WhisperModel:
        with self._lock:
            if self._model is None:
                check_model_dir(self.model_dir)
                try:
                    module = importlib.import_module("faster_whisper")
                except ImportError as exc:
                    raise STTUnavailableError(
                        f"faster-whisper is not installed: {_INSTALL}"
                    ) from exc
                self._model = module.WhisperModel(
                    str(self.model_dir),
                    device=self._device,
                    compute_type=self._compute_type,
                    local_files_only=True,
                )
            return self._model


class WhisperStream:
    """One call's Whisper session (an `STTStream`): finals only, in utterance order."""

    def __init__(self, stt: WhisperSTT) -> None:
        self._stt = stt
        self._preroll = PreRoll(stt.preroll_samples)
        self._utterance: list[Samples] | None = None
        self._size = 0
        self._prompt: str | None = None
        self._utterance_prompt: str | None = None
        self._results: asyncio.Queue[Transcript | None] = asyncio.Queue()
        self._last: asyncio.Task[None] | None = None
        self._pending: set[asyncio.Task[None]] = set()
        self._closed = False

    def push(self, samples: Samples) -> None:
        if self._closed:
            return
        if self._utterance is None:
            self._preroll.push(samples)
            return
        self._utterance.append(samples)
        self._size += len(samples)
        if self._size >= self._stt.max_utterance_samples:
            self.speech_ended()
            self.speech_started()

    def speech_started(self) -> None:
        if self._closed or self._utterance is not None:
            return
        self._utterance = self._preroll.take()
        self._size = sum(len(c) for c in self._utterance)
        self._utterance_prompt = self._prompt

    def speech_ended(self) -> None:
        if self._utterance is None:
            return
        audio = np.concatenate(self._utterance) if self._utterance else np.zeros(0, np.int16)
        self._utterance = None
        task = asyncio.get_running_loop().create_task(
            self._transcribe(audio, self._utterance_prompt, self._last)
        )
        self._last = task
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    def expect(self, phrases: Sequence[str] | None) -> None:
        """Phrases for the utterances that start from now on, as Whisper's prompt: a bias
        rather than a grammar."""
        plain = [p for p in (without_digits(p) for p in phrases or ()) if p]
        self._prompt = ", ".join(plain) or None

    async def results(self) -> AsyncIterator[Transcript]:
        while (transcript := await self._results.get()) is not None:
            yield transcript

    async def aclose(self) -> None:
        """Stop; a transcription still running is dropped."""
        if self._closed:
            return
        self._closed = True
        self._utterance = None
        pending = list(self._pending)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        self._results.put_nowait(None)

    async def _transcribe(
        self, audio: Samples, prompt: str | None, previous: asyncio.Task[None] | None
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            transcript = await self._stt.workers.run(self._stt.transcribe, audio, prompt)
        except Exception:
            log.exception("Whisper failed; the utterance is lost")
            transcript = Transcript("", final=True)
        self._results.put_nowait(transcript)
