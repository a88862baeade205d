"""The Pipecat side of `bench/compare_pipecat.py`: a Pipecat 1.14 server that answers Twilio Media
Streams with instant fake stages, so what a load test measures is Pipecat's own cost.

It runs only in the bench venv (`scripts/bench-pipecat-env` builds `.venv-bench` with pipecat-ai
pinned); `bench/compare_pipecat.py` starts it with the reply and timings of our bench server
(`opusagent.loadtest.bench_server`), so both speak the same audio:

    .venv-bench/bin/python bench/pipecat_server.py --port 8766 --silence-ms 200 \
        --heard hello --reply "Okay, noted." --seconds-per-word 0.25 --chunk-s 0.1

Each call (one WebSocket at `--path`, `/twilio/media` by default) reads Twilio's `connected` and
`start` messages (Pipecat's `parse_telephony_websocket`) and runs its own pipeline, one
`WorkerRunner` per call, as Pipecat's telephony examples do:

1. `FastAPIWebsocketTransport` input: `TwilioFrameSerializer` (auto_hang_up=False, no
   credentials) turns each 20 ms mu-law 8 kHz `media` message into PCM at the pipeline's 8 kHz.
2. `VADProcessor` with `SileroVADAnalyzer(params=VADParams(stop_secs=--silence-ms / 1000))`, other
   VAD parameters Pipecat's defaults; each call loads its own Silero ONNX session (the model
   shipped in the pipecat-ai wheel).
3. `InstantSTT`: a final `TranscriptionFrame` (`--heard`) at each `VADUserStoppedSpeakingFrame`.
4. `InstantLLM`: at each transcription, `LLMFullResponseStartFrame`, one `LLMTextFrame`
   (`--reply`) and `LLMFullResponseEndFrame`, at once.
5. `ToneTTS`, a `TTSService` (sentence aggregation, audio contexts, started/stopped frames, as
   Pipecat's Piper service): the tone `opusagent.testing.FakeTTS` makes, a 440 Hz sine of
   amplitude 3000 at 22 050 Hz lasting `--seconds-per-word` per word, in `--chunk-s` chunks.
6. Transport output: resampled to 8 kHz, sent in Pipecat's default 40 ms chunks paced in real
   time, mu-law `media` messages.

On connect the call greets with `--reply` (a `TTSSpeakFrame`), as our bench agent answers the
start of a call. Not in the pipeline: context aggregators, user-turn strategies or Smart-Turn,
interruptions (the load tool's caller never speaks over the agent), RTVI (`enable_rtvi=False`:
a phone call has no RTVI client), metrics. Pipecat's logging (loguru) is set to WARNING, as our
bench server logs at warning. `GET /bench/ready` answers `{"pid", "ready"}` as ours does.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncGenerator

try:
    import numpy as np
    import uvicorn
    from fastapi import FastAPI, WebSocket
    from loguru import logger
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.frames.frames import (
        Frame,
        LLMFullResponseEndFrame,
        LLMFullResponseStartFrame,
        LLMTextFrame,
        TranscriptionFrame,
        TTSAudioRawFrame,
        TTSSpeakFrame,
        VADUserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.audio.vad_processor import VADProcessor
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.runner.utils import parse_telephony_websocket
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.services.settings import TTSSettings
    from pipecat.services.tts_service import TTSService
    from pipecat.transports.websocket.fastapi import (
        FastAPIWebsocketParams,
        FastAPIWebsocketTransport,
    )
    from pipecat.utils.time import time_now_iso8601
    from pipecat.workers.runner import WorkerRunner
except ModuleNotFoundError as missing:
    raise SystemExit(
        f"bench/pipecat_server.py runs in the bench venv only ({missing.name} is missing here): "
        "build it with scripts/bench-pipecat-env, then run .venv-bench/bin/python "
        "bench/pipecat_server.py"
    ) from missing

PIPELINE_RATE = 8000
"""Twilio's rate; Pipecat's Twilio examples run the pipeline at it both ways."""
TONE_RATE = 22050
TONE_HZ = 440
TONE_AMPLITUDE = 3000
"""`opusagent.testing.FakeTTS`'s tone."""
READY_PATH = "/bench/ready"


class InstantSTT(FrameProcessor):
    """Hears `heard` the moment the VAD ends the caller's speech; all else passes through."""

    def __init__(self, heard: str) -> None:
        super().__init__()
        self._heard = heard

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if (
            isinstance(frame, VADUserStoppedSpeakingFrame)
            and direction is FrameDirection.DOWNSTREAM
        ):
            transcript = TranscriptionFrame(
                self._heard, "caller", time_now_iso8601(), finalized=True
            )
            await self.push_frame(transcript)


class InstantLLM(FrameProcessor):
    """Answers every transcription with `reply` at once, as an LLM's streamed response."""

    def __init__(self, reply: str) -> None:
        super().__init__()
        self._reply = reply

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, TranscriptionFrame):
            await self.push_frame(frame, direction)
            return
        await self.push_frame(LLMFullResponseStartFrame())
        await self.push_frame(LLMTextFrame(self._reply))
        await self.push_frame(LLMFullResponseEndFrame())


class ToneTTS(TTSService):
    """Speaks each sentence as `FakeTTS`'s tone, `seconds_per_word` per word, at once."""

    def __init__(self, seconds_per_word: float, chunk_s: float) -> None:
        super().__init__(
            push_start_frame=True,
            push_stop_frames=True,
            sample_rate=TONE_RATE,
            settings=TTSSettings(model=None, voice=None, language=None),
        )
        self._seconds_per_word = seconds_per_word
        self._chunk = max(1, round(chunk_s * TONE_RATE))

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame, None]:
        total = round(len(text.split()) * self._seconds_per_word * TONE_RATE)
        t = np.arange(total) / TONE_RATE
        tone = (TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype("<i2")
        for offset in range(0, total, self._chunk):
            chunk = tone[offset : offset + self._chunk].tobytes()
            yield TTSAudioRawFrame(chunk, TONE_RATE, 1, context_id=context_id)


def create_app(args: argparse.Namespace) -> FastAPI:
    app = FastAPI()

    @app.get(READY_PATH)
    async def ready() -> dict[str, object]:
        return {"pid": os.getpid(), "ready": True}

    @app.websocket(args.path)
    async def twilio_media(websocket: WebSocket) -> None:
        await websocket.accept()
        _, call = await parse_telephony_websocket(websocket)
        serializer = TwilioFrameSerializer(
            stream_sid=call["stream_id"],
            call_sid=call["call_id"],
            params=TwilioFrameSerializer.InputParams(auto_hang_up=False),
        )
        transport = FastAPIWebsocketTransport(
            websocket,
            FastAPIWebsocketParams(
                audio_in_enabled=True, audio_out_enabled=True, serializer=serializer
            ),
        )
        vad = SileroVADAnalyzer(params=VADParams(stop_secs=args.silence_ms / 1000))
        pipeline = Pipeline(
            [
                transport.input(),
                VADProcessor(vad_analyzer=vad),
                InstantSTT(args.heard),
                InstantLLM(args.reply),
                ToneTTS(args.seconds_per_word, args.chunk_s),
                transport.output(),
            ]
        )
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=PIPELINE_RATE, audio_out_sample_rate=PIPELINE_RATE
            ),
            enable_rtvi=False,
        )

        @transport.event_handler("on_client_connected")
        async def greet(_transport: FastAPIWebsocketTransport, _ws: WebSocket) -> None:
            await worker.queue_frames([TTSSpeakFrame(args.reply)])

        @transport.event_handler("on_client_disconnected")
        async def hung_up(_transport: FastAPIWebsocketTransport, _ws: WebSocket) -> None:
            await worker.cancel()

        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        await runner.run()

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--path", default="/twilio/media", help="the Media Streams WebSocket")
    parser.add_argument("--silence-ms", type=int, default=200, help="VAD stop_secs, in ms")
    parser.add_argument("--heard", required=True, help="what the fake STT hears")
    parser.add_argument("--reply", required=True, help="what the fake LLM answers")
    parser.add_argument("--seconds-per-word", type=float, required=True)
    parser.add_argument("--chunk-s", type=float, required=True, help="TTS audio chunk length")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")
    uvicorn.run(create_app(args), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
