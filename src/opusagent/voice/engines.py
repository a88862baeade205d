"""Build the speech recogniser and synthesiser that the settings name.

Each choice is checked before anything loads: an engine that cannot run here (a missing extra,
program or model folder) is refused with what to install and which engines are available.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable, Mapping
from typing import get_args

from opusagent.config import Settings, SttEngine, TtsEngine
from opusagent.voice.stt.pocketsphinx import PocketsphinxSTT
from opusagent.voice.stt.whisper import WhisperSTT
from opusagent.voice.tts import EspeakTTS, FliteTTS, StreamingTTS
from opusagent.voice.workers import ModelWorkers


class EngineChoiceError(RuntimeError):
    """The engine a setting names cannot run on this machine."""


Check = Callable[[], str | None]
"""Says why an engine cannot run here, or None when it can."""


def _missing_module(module: str, fix: str) -> Check:
    return lambda: None if importlib.util.find_spec(module) else f"{module} is missing ({fix})"


def _missing_program(program: str) -> Check:
    fix = f"apt-get install {program}"
    return lambda: None if shutil.which(program) else f"{program} is missing ({fix})"


_STT_CHECKS: Mapping[str, Check] = {
    "pocketsphinx": _missing_module("pocketsphinx", "uv sync"),
    "whisper": _missing_module("faster_whisper", "uv sync --extra whisper"),
}
_TTS_CHECKS: Mapping[str, Check] = {
    "piper": _missing_module("piper", "uv sync --extra piper"),
    "flite": _missing_program("flite"),
    "espeak": _missing_program("espeak-ng"),
}


def unavailable_stt() -> dict[str, str]:
    """Speech recognisers that cannot run here, each with why."""
    return _problems(_STT_CHECKS, get_args(SttEngine))


def unavailable_tts() -> dict[str, str]:
    """Speech synthesisers that cannot run here, each with why."""
    return _problems(_TTS_CHECKS, get_args(TtsEngine))


def _problems(
    checks: Mapping[str, Callable[[], str | None]], names: tuple[str, ...]
) -> dict[str, str]:
    return {name: problem for name in names if (problem := checks[name]()) is not None}


def _refuse(kind: str, choice: str, problems: Mapping[str, str], names: tuple[str, ...]) -> None:
    if choice in problems:
        usable = [name for name in names if name not in problems]
        raise EngineChoiceError(
            f"{kind}={choice} cannot run here: {problems[choice]}. "
            f"Available: {', '.join(usable) or 'none'}."
        )


def build_stt(settings: Settings, workers: ModelWorkers) -> PocketsphinxSTT | WhisperSTT:
    """The recogniser `settings.stt` names; call its blocking `load()` on a worker."""
    _refuse("stt", settings.stt, unavailable_stt(), get_args(SttEngine))
    if settings.stt == "whisper":
        if settings.whisper_model_dir is None:
            raise EngineChoiceError(
                "stt=whisper needs OPUSAGENT_WHISPER_MODEL_DIR: a folder holding a CTranslate2 "
                "Whisper model (it is never downloaded)"
            )
        return WhisperSTT(workers, settings.whisper_model_dir.expanduser())
    return PocketsphinxSTT(workers, decoders=settings.stt_decoders)


def build_tts(settings: Settings, workers: ModelWorkers) -> StreamingTTS:
    """The synthesiser `settings.tts` names; call its blocking `load()` on a worker."""
    _refuse("tts", settings.tts, unavailable_tts(), get_args(TtsEngine))
    cache = settings.tts_cache_dir.expanduser()
    speed = settings.tts_speed
    if settings.tts == "piper":
        from opusagent.voice.tts.piper import PiperTTS  # GPL code loads only when chosen

        return PiperTTS(workers, voice=settings.tts_voice, speed=speed, cache=cache)
    if settings.tts == "flite":
        return FliteTTS(workers, voice=settings.tts_voice or "slt", speed=speed, cache=cache)
    return EspeakTTS(workers, voice=settings.tts_voice or "en-us", speed=speed, cache=cache)
