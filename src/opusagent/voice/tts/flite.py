"""Flite: near-instant, clearer than espeak-ng, still synthetic; on Debian as `flite`."""

from __future__ import annotations

import subprocess
from typing import Unpack

from opusagent.voice.tts.cache import VoiceKey
from opusagent.voice.tts.engine import (
    COMMAND_TIMEOUT_S,
    StreamingOptions,
    StreamingTTS,
    SynthesisError,
    find_program,
    run_wav_command,
)
from opusagent.voice.workers import ModelWorkers

DEFAULT_VOICE = "slt"
"""The clearest built-in voice on Debian (16 kHz); `kal` is 8 kHz."""


class FliteTTS(StreamingTTS):
    """flite run once per piece, its WAV written to stdout.

    `voice` is a built-in voice name (`flite -lv`) or the path of a .flitevox file; `speed`
    divides the duration stretch. The constructor runs the program to check the voice and
    learn its sample rate.
    """

    def __init__(
        self,
        workers: ModelWorkers,
        *,
        voice: str = DEFAULT_VOICE,
        speed: float = 1.0,
        program: str = "flite",
        **options: Unpack[StreamingOptions],
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        path = find_program(program, "flite")
        # flite falls back to its default voice without a word when a name is unknown.
        if "/" not in voice and voice not in (builtin := _builtin_voices(path)):
            raise ValueError(f"flite has no voice {voice!r}; built in: {' '.join(builtin)}")
        self._argv = [path, "-voice", voice, "--setf", f"duration_stretch={1 / speed:.4f}"]
        rate, _ = run_wav_command([*self._argv, "-t", "a", "-o", "/dev/stdout"])
        super().__init__(workers, VoiceKey("flite", voice, speed, rate), **options)

    def render(self, text: str) -> bytes:
        rate, pcm = run_wav_command([*self._argv, "-t", text, "-o", "/dev/stdout"])
        if rate != self.voice.sample_rate:
            raise SynthesisError(f"flite changed rate to {rate} Hz")
        return pcm


def _builtin_voices(program: str) -> list[str]:
    """Names from `flite -lv`, which prints "Voices available: kal awb ...\"."""
    result = subprocess.run(
        [program, "-lv"], capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False
    )
    _, _, names = result.stdout.partition(":")
    return names.split()
