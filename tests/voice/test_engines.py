"""Choosing the speech engines by settings, with clear refusals."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from opusagent.config import Settings
from opusagent.voice.engines import (
    EngineChoiceError,
    build_stt,
    build_tts,
    unavailable_stt,
    unavailable_tts,
)
from opusagent.voice.stt.pocketsphinx import PocketsphinxSTT
from opusagent.voice.tts import FliteTTS
from opusagent.voice.tts.piper import PiperTTS
from opusagent.voice.workers import ModelWorkers


@pytest.fixture
def workers() -> ModelWorkers:
    return ModelWorkers(1)


def hide_module(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = importlib.util.find_spec

    def find_spec(module: str, *args: Any) -> Any:
        return None if module == name else real(module, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_the_defaults_are_pocketsphinx_and_piper(tmp_path: Path, workers: ModelWorkers) -> None:
    settings = Settings(tts_cache_dir=tmp_path)

    assert isinstance(build_stt(settings, workers), PocketsphinxSTT)
    assert isinstance(build_tts(settings, workers), PiperTTS)


def test_a_missing_extra_is_refused_naming_what_to_install(
    monkeypatch: pytest.MonkeyPatch, workers: ModelWorkers
) -> None:
    hide_module(monkeypatch, "faster_whisper")

    with pytest.raises(EngineChoiceError) as refused:
        build_stt(Settings(stt="whisper"), workers)

    assert str(refused.value) == (
        "stt=whisper cannot run here: faster_whisper is missing (uv sync --extra whisper). "
        "Available: pocketsphinx."
    )
    assert "whisper" in unavailable_stt()


def test_a_missing_piper_lists_the_engines_that_can_run(
    monkeypatch: pytest.MonkeyPatch, workers: ModelWorkers
) -> None:
    hide_module(monkeypatch, "piper")

    with pytest.raises(EngineChoiceError, match=r"uv sync --extra piper\). Available: flite"):
        build_tts(Settings(tts="piper"), workers)


def test_a_missing_program_names_its_debian_package(
    monkeypatch: pytest.MonkeyPatch, workers: ModelWorkers
) -> None:
    monkeypatch.setattr("shutil.which", lambda program: None)

    with pytest.raises(EngineChoiceError, match=r"espeak-ng is missing \(apt-get install"):
        build_tts(Settings(tts="espeak"), workers)
    assert set(unavailable_tts()) == {"flite", "espeak"}


def test_whisper_needs_its_model_folder(
    monkeypatch: pytest.MonkeyPatch, workers: ModelWorkers
) -> None:
    monkeypatch.setattr(
        "opusagent.voice.engines.unavailable_stt", lambda: {}
    )  # as if the extra were installed

    with pytest.raises(EngineChoiceError, match="OPUSAGENT_WHISPER_MODEL_DIR"):
        build_stt(Settings(stt="whisper"), workers)


def test_voice_and_speed_reach_the_engine(tmp_path: Path, workers: ModelWorkers) -> None:
    tts = build_tts(
        Settings(tts="flite", tts_voice="kal", tts_speed=1.5, tts_cache_dir=tmp_path), workers
    )

    assert isinstance(tts, FliteTTS)
    assert (tts.voice.voice, tts.voice.speed) == ("kal", 1.5)
