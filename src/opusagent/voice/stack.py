"""The process's speech stages, loaded once at start-up and shared by every call."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from opusagent.config import Settings
from opusagent.voice.engines import build_stt, build_tts
from opusagent.voice.stt.pocketsphinx import PocketsphinxSTT
from opusagent.voice.stt.whisper import WhisperSTT
from opusagent.voice.tts import StreamingTTS
from opusagent.voice.vad import SileroModel, SileroVAD
from opusagent.voice.workers import ModelWorkers


class VoiceStack:
    """VAD, STT and TTS for one process; each loads (and warms up) off the event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.workers = ModelWorkers(settings.inference_workers)
        self.vad: SileroVAD | None = None
        self.stt: PocketsphinxSTT | WhisperSTT | None = None
        self.tts: StreamingTTS | None = None

    def loaders(self) -> dict[str, Callable[[], Awaitable[None]]]:
        """Start-up loaders by component name, for the readiness check."""
        return {"vad": self.load_vad, "stt": self.load_stt, "tts": self.load_tts}

    async def load_vad(self) -> None:
        self.vad = await asyncio.to_thread(_warm_vad, self.settings.vad_threads)

    async def load_stt(self) -> None:
        stt = build_stt(self.settings, self.workers)
        await asyncio.to_thread(stt.load)
        self.stt = stt

    async def load_tts(self) -> None:
        tts = build_tts(self.settings, self.workers)
        await asyncio.to_thread(tts.warm_up)
        self.tts = tts

    async def aclose(self) -> None:
        if self.vad is not None:
            await self.vad.aclose()
        if isinstance(self.stt, PocketsphinxSTT):
            await asyncio.to_thread(self.stt.close)  # its decoders are processes
        self.workers.close()


def _warm_vad(threads: int) -> SileroVAD:
    vad = SileroVAD(SileroModel(threads=threads))
    vad.warm_up()
    return vad
