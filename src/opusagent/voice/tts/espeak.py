"""eSpeak NG: near-instant formant synthesis, robotic but always available on Debian."""

from __future__ import annotations

from typing import Unpack

from opusagent.voice.tts.cache import VoiceKey
from opusagent.voice.tts.engine import (
    StreamingOptions,
    StreamingTTS,
    SynthesisError,
    find_program,
    run_wav_command,
)
from opusagent.voice.workers import ModelWorkers

DEFAULT_VOICE = "en-us"
BASE_WORDS_PER_MINUTE = 175
"""espeak-ng's own default rate: speed 1.0."""


class EspeakTTS(StreamingTTS):
    """espeak-ng run once per piece, its WAV read from stdout.

    `speed` multiplies the rate (1.0 is 175 words per minute). The constructor runs the program
    once to check the voice and learn its sample rate.
    """

    def __init__(
        self,
        workers: ModelWorkers,
        *,
        voice: str = DEFAULT_VOICE,
        speed: float = 1.0,
        program: str = "espeak-ng",
        **options: Unpack[StreamingOptions],
    ) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._argv = [
            find_program(program, "espeak-ng"),
            "--stdout",
            "--stdin",
            "-b",
            "1",  # UTF-8 input
            "-v",
            voice,
            "-s",
            str(round(BASE_WORDS_PER_MINUTE * speed)),
        ]
        try:
            rate, _ = run_wav_command(self._argv, b"a")
        except SynthesisError as exc:
            raise ValueError(f"espeak-ng cannot speak with voice {voice!r}: {exc}") from exc
        super().__init__(workers, VoiceKey("espeak-ng", voice, speed, rate), **options)

    def render(self, text: str) -> bytes:
        rate, pcm = run_wav_command(self._argv, text.encode())
        if rate != self.voice.sample_rate:
            raise SynthesisError(f"espeak-ng changed rate to {rate} Hz")
        return pcm
