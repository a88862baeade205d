"""WhisperSTT without faster-whisper or weights: its errors, and its streams on a fake model."""

from __future__ import annotations

import asyncio
import sys
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pytest

from opusagent.call.stages import Transcript
from opusagent.voice.stt import STTUnavailableError, WhisperSTT, digits
from opusagent.voice.workers import ModelWorkers

CHUNK = 320


@pytest.fixture
def workers() -> Iterator[ModelWorkers]:
    pool = ModelWorkers(1)
    yield pool
    pool.close()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    for name in ("model.bin", "config.json"):
        (tmp_path / name).write_bytes(b"{}")
    return tmp_path


@pytest.fixture
def without_faster_whisper(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import faster_whisper` fail even where the extra is installed."""
    monkeypatch.setitem(sys.modules, "faster_whisper", None)


@pytest.mark.usefixtures("without_faster_whisper")
def test_a_missing_extra_names_how_to_install_it(workers: ModelWorkers, model_dir: Path) -> None:
    stt = WhisperSTT(workers, model_dir)  # constructing never imports faster-whisper
    with pytest.raises(STTUnavailableError) as error:
        stt.load()
    assert "pip install 'opusagent[whisper]'" in str(error.value)
    assert "uv sync --extra whisper" in str(error.value)


@pytest.mark.usefixtures("without_faster_whisper")
def test_a_missing_folder_names_the_setting(workers: ModelWorkers, tmp_path: Path) -> None:
    with pytest.raises(STTUnavailableError, match=r"does not exist.*OPUSAGENT_WHISPER_MODEL_DIR"):
        WhisperSTT(workers, tmp_path / "absent").load()


@pytest.mark.usefixtures("without_faster_whisper")
def test_a_folder_without_a_model_says_what_is_missing(
    workers: ModelWorkers, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(
        STTUnavailableError, match=r"holds no CTranslate2 model \(missing model.bin\)"
    ):
        WhisperSTT(workers, tmp_path).load()


@dataclass
class Segment:
    text: str
    avg_logprob: float = -0.1


class FakeWhisperModel:
    """Stands in for faster_whisper.WhisperModel; records how it was made and used."""

    made: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    heard: ClassVar[list[tuple[int, str | None]]] = []

    def __init__(self, model: str, **options: Any) -> None:
        self.made.append((model, options))

    def transcribe(
        self, audio: npt.NDArray[np.float32], **options: Any
    ) -> tuple[list[Segment], None]:
        self.heard.append((len(audio), options.get("initial_prompt")))
        return [Segment(f" utterance {len(self.heard)}")], None


@pytest.fixture
def fake_faster_whisper(monkeypatch: pytest.MonkeyPatch) -> type[FakeWhisperModel]:
    module = types.ModuleType("faster_whisper")
    module.WhisperModel = FakeWhisperModel  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "faster_whisper", module)
    monkeypatch.setattr(FakeWhisperModel, "made", [])
    monkeypatch.setattr(FakeWhisperModel, "heard", [])
    return FakeWhisperModel


def test_the_model_loads_from_the_folder_only(
    workers: ModelWorkers, model_dir: Path, fake_faster_whisper: type[FakeWhisperModel]
) -> None:
    WhisperSTT(workers, model_dir).load()
    ((path, options),) = fake_faster_whisper.made
    assert path == str(model_dir)
    assert options["local_files_only"] is True


async def test_a_stream_transcribes_each_utterance_once_it_ends(
    workers: ModelWorkers, model_dir: Path, fake_faster_whisper: type[FakeWhisperModel]
) -> None:
    stt = WhisperSTT(workers, model_dir, preroll_ms=100)
    stream = stt.open_stream()
    tone = np.full(CHUNK, 1000, np.int16)
    for _ in range(20):  # silence before speech: only the last 100 ms is kept
        stream.push(tone)
    stream.speech_started()
    for _ in range(10):
        stream.push(tone)
    stream.expect(["yes", "no", "my pin is " + digits(4)])
    stream.speech_ended()
    for _ in range(5):
        stream.push(tone)  # silence between utterances is not transcribed
    stream.speech_started()
    stream.push(tone)
    stream.speech_ended()
    got: list[Transcript] = []
    async with asyncio.timeout(5):
        async for transcript in stream.results():
            got.append(transcript)
            if len(got) == 2:
                await stream.aclose()
    assert [t.text for t in got] == ["utterance 1", "utterance 2"]
    assert all(t.final and t.confidence is not None for t in got)
    first, second = fake_faster_whisper.heard
    assert first == (100 * 16 + 10 * CHUNK, None)
    assert second == (100 * 16 + CHUNK, "yes, no, my pin is")
