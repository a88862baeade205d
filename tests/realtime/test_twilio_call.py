"""A Twilio Media Streams call end to end through the speech-to-speech backend: the real Twilio
bridge and far end on one side, the Realtime test server (Silero VAD, pocketsphinx, Piper) on the
other, and the bank agent deciding in between; the caller barges in and the model's item is
truncated to what the far end acknowledged having played."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from fastapi import FastAPI

from bridges.loopback import serving, until
from opusagent.app import create_app
from opusagent.bridges.dial import dial
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.bridges.session import Frame
from opusagent.config import RealtimeSettings, Settings
from opusagent.testing.realtime_server import ModelVoice, RealtimeTestServer
from opusagent.voice.stack import VoiceStack

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]
MARK_EVERY_MS = 100


@pytest.fixture
async def model_voice() -> AsyncIterator[ModelVoice]:
    """The offline stack the test server listens and speaks with."""
    stack = VoiceStack(Settings())
    await asyncio.gather(stack.load_vad(), stack.load_stt(), stack.load_tts())
    assert stack.vad is not None and stack.stt is not None and stack.tts is not None
    try:
        yield ModelVoice(stack.vad, stack.stt, stack.tts)
    finally:
        await stack.aclose()


async def wait_ready(app: FastAPI, within: float = 120.0) -> None:
    async with asyncio.timeout(within):
        await app.state.readiness.wait()
    assert app.state.readiness.ready, app.state.readiness.summary()


def record_acknowledgements(far_end: TwilioMediaFarEnd) -> list[tuple[float, str]]:
    """(loop time, mark name) of every mark the far end acknowledges, as it does."""
    acks: list[tuple[float, str]] = []
    played = far_end.marker_played

    def acknowledged(token: str) -> Frame | None:
        acks.append((asyncio.get_running_loop().time(), token))
        return played(token)

    far_end.marker_played = acknowledged  # type: ignore[method-assign]
    return acks


@pytest.mark.slow
async def test_a_twilio_call_runs_through_the_realtime_model_with_a_barge_in(
    model_voice: ModelVoice, speak: Speak, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stolen, rate = speak("my card was stolen")
    caplog.set_level(logging.INFO, logger="opusagent.agent.fsa.agent")
    far_end = TwilioMediaFarEnd()
    acks = record_acknowledgements(far_end)
    async with RealtimeTestServer(model_voice) as server:
        settings = Settings(
            backend="realtime",
            realtime=RealtimeSettings(url=server.url, api_key="sk-test"),
            database_url=f"sqlite+aiosqlite:///{tmp_path}/calls.db",
            nlu_embeddings=False,
        )
        app = create_app(settings)
        async with serving(app) as url:
            await wait_ready(app)
            async with dial(far_end, f"{url}/twilio/media") as call:
                assert await call.wait_until_quiet(1.0, timeout=30), "the greeting played"
                await call.play(stolen, rate)
                await until(lambda: call.result().turns[0].agent_start is not None, within=20)
                await asyncio.sleep(1.5)  # well into "I can help with that. Please say…"
                await call.play(stolen, rate)  # the caller cuts in
                await until(lambda: bool(server.received("conversation.item.truncate")), 10)
                await until(lambda: call.result().turns[1].agent_start is not None, within=20)
                assert await call.wait_until_quiet(1.0, timeout=30), "the reprompt played"
                await call.dtmf("4217#")
                await until(lambda: "identify -> verify" in caplog.text, within=20)
                await call.wait_until_quiet(1.0, timeout=30)
            result = call.result()
            records = app.state.records()
            async with asyncio.timeout(10):
                # The record is stored once the call has ended; nothing signals it.
                while (record := await records.get(far_end.call_sid)) is None:  # noqa: ASYNC110
                    await asyncio.sleep(0.05)

    # The caller's turns were heard and answered through the model; the keys went to the agent.
    answer = result.turns[0]
    assert answer.latency is not None
    latencies = ", ".join(f"{t.latency * 1000:.0f} ms" for t in result.turns if t.latency)
    print(f"\nend of caller speech -> first agent audio: {latencies}")
    assert "welcome -> identify" in caplog.text
    transcripts = server.sent("conversation.item.input_audio_transcription.completed")
    assert transcripts[0]["transcript"] == "my card was stolen"
    measured = ", ".join(f"{s * 1000:.0f} ms" for s in record.turn_latencies_s)
    print(f"end of caller speech (server VAD) -> first agent audio sent: {measured}")
    [cut] = [line for line in record.transcript if line.interrupted]
    assert cut.speaker == "agent" and cut.heard and cut.text.startswith(cut.heard)
    assert len(cut.heard) < len(cut.text)

    # The barge-in: the far end's buffer was cleared and the item truncated to what it had
    # acknowledged playing before the clear reached it.
    clears = [at for at, frame in call.received if '"clear"' in str(frame)]
    assert clears, "the bridge cleared Twilio's playback"
    cleared_at = call.started_at + clears[0]
    [truncate] = server.received("conversation.item.truncate")
    before_clear = []
    for at, name in acks:
        _, reply, ms = name.rsplit(":", 2)
        if at < cleared_at:
            before_clear.append((reply, int(ms)))
    cut_reply = before_clear[-1][0]
    acked_ms = [ms for reply, ms in before_clear if reply == cut_reply]
    assert truncate["audio_end_ms"] in acked_ms
    assert truncate["audio_end_ms"] >= max(acked_ms) - MARK_EVERY_MS
    played_s = clears[0] - (answer.agent_start or 0.0)
    assert truncate["audio_end_ms"] / 1000 <= played_s
    print(
        f"barge-in: truncated at {truncate['audio_end_ms']} ms; far end acknowledged "
        f"{max(acked_ms)} ms and played {played_s * 1000:.0f} ms before the clear"
    )
    [truncated] = server.sent("conversation.item.truncated")
    assert truncated["audio_end_ms"] == truncate["audio_end_ms"]
    assert not server.sent("error")
    verify = server.received("session.update")[-1]["session"]["instructions"]
    assert verify.endswith("Say: Thanks. For security, what is your date of birth?")
