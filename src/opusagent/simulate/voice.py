"""The simulated caller's own speech stages: a synthesiser per persona voice for what it says,
and a VAD and recogniser for what it hears (the agent's audio as it came down the line)."""

from __future__ import annotations

import asyncio
import re

from opusagent.call.stages import Samples
from opusagent.config import Settings
from opusagent.simulate.personas import Persona
from opusagent.voice.engines import build_tts
from opusagent.voice.offline import find_utterances, resample, synthesize, transcribe
from opusagent.voice.stack import VoiceStack
from opusagent.voice.tts import StreamingTTS

_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT = re.compile(r"\d")


def spelled_digits(text: str) -> str:
    """Digits read one by one, as people say card and policy numbers: "4217" -> "four two one
    seven" (a synthesiser would read "four thousand two hundred seventeen")."""
    return " ".join(_DIGIT.sub(lambda m: f" {_DIGIT_WORDS[int(m.group())]} ", text).split())


class CallerVoice:
    """Speech for every simulated caller of a run: loaded once, shared by concurrent calls."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = VoiceStack(settings)
        self._voices: dict[tuple[str, str | None, float], StreamingTTS] = {}
        self._vad_lock = asyncio.Lock()
        self._tts_lock = asyncio.Lock()

    async def load(self) -> None:
        await self._stack.load_vad()
        await self._stack.load_stt()

    async def speak(self, text: str, persona: Persona) -> tuple[Samples, int]:
        """`text` in the persona's voice: int16 samples and their rate."""
        tts = await self._tts_for(persona)
        result = await synthesize(tts, spelled_digits(text))
        return result.samples, result.rate

    async def transcribe(self, samples: Samples, rate: int) -> str:
        """What the recogniser hears in `samples` (every utterance the VAD finds, joined)."""
        vad, stt = self._stack.vad, self._stack.stt
        if vad is None or stt is None:
            raise RuntimeError("CallerVoice.load() was not awaited")
        audio = resample(samples, rate, vad.sample_rate) if rate != vad.sample_rate else samples
        async with self._vad_lock:  # one VAD, whose streams are stepped inline
            segments = await asyncio.to_thread(find_utterances, audio, vad, self._settings.turn)
        if not segments:
            return ""
        heard = resample(audio, vad.sample_rate, stt.input_format.sample_rate)
        lines = await transcribe(heard, stt, segments)
        return " ".join(line.text for line in lines if line.text)

    async def _tts_for(self, persona: Persona) -> StreamingTTS:
        key = (persona.voice.engine, persona.voice_name(), persona.speaking_rate)
        async with self._tts_lock:
            tts = self._voices.get(key)
            if tts is None:
                settings = self._settings.model_copy(
                    update={"tts": key[0], "tts_voice": key[1], "tts_speed": key[2]}
                )
                tts = build_tts(settings, self._stack.workers)
                await asyncio.to_thread(tts.warm_up)
                self._voices[key] = tts
        return tts

    async def aclose(self) -> None:
        await self._stack.aclose()
