"""Whole calls on loopback for bridge contract tests: a real uvicorn server with fake instant
stages, driven by the dialler with a provider's far end."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import uvicorn
from fastapi import FastAPI

from opusagent.app import create_app
from opusagent.audio.formats import AudioFormat
from opusagent.bridges.dial import DialSession
from opusagent.bridges.farend import FarEnd
from opusagent.bridges.session import Frame
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import CallMedia
from opusagent.call.stages import Samples, Speaker, STTStream, Transcript, TurnKind, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.testing import FakeTTS, FakeVAD, ScriptedAgent, ScriptedSTT, Utterance

POLICY = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0)
SECONDS_PER_WORD = 0.05
SPEECH_RATE = 16000
SPEAK_AT = 0.2
SPEAK_FOR = 0.3
REPLY_S = 7 * SECONDS_PER_WORD
"""The greeting "Hello." and the reply "You said my card is lost." """
SCRIPTS: Mapping[str, Sequence[Utterance]] = {
    "": [Utterance(SPEAK_AT, SPEAK_AT + SPEAK_FOR, "my card is lost")],
    "alice": [Utterance(SPEAK_AT, SPEAK_AT + SPEAK_FOR, "my card is lost")],
    "bob": [Utterance(0.4, 0.8, "book an appointment")],
}
"""The caller's words by the call's `script` parameter: silence until `start`, speech to `end`."""


def speech(seconds: float, seed: int = 7) -> Samples:
    """Loud noise the fake VAD takes for speech, at `SPEECH_RATE`."""
    rng = np.random.default_rng(seed)
    return rng.integers(-8000, 8000, round(seconds * SPEECH_RATE)).astype(np.int16)


async def say_my_line(call: DialSession) -> None:
    """The caller's side of script "" (or "alice"): silence, then speech."""
    await call.silence(SPEAK_AT)
    await call.play(speech(SPEAK_FOR), SPEECH_RATE)


def echo(turn: UserTurn) -> str:
    if turn.kind is TurnKind.START:
        return "Hello."
    return f"You said {turn.text or turn.dtmf}."


class HeardSamples(Protocol):
    """What counts the caller audio a stream was given."""

    samples: int


class CountingStream:
    """An STT stream that passes everything to `inner` and counts the samples pushed."""

    def __init__(self, inner: STTStream, counter: HeardSamples) -> None:
        self._inner = inner
        self._counter = counter

    def push(self, samples: Samples) -> None:
        self._counter.samples += len(samples)
        self._inner.push(samples)

    def speech_started(self) -> None:
        self._inner.speech_started()

    def speech_ended(self) -> None:
        self._inner.speech_ended()

    def expect(self, phrases: Sequence[str] | None) -> None:
        self._inner.expect(phrases)

    def results(self) -> AsyncIterator[Transcript]:
        return self._inner.results()

    async def aclose(self) -> None:
        await self._inner.aclose()


class CountingSTT(ScriptedSTT):
    """A scripted STT that also counts the caller audio it was given."""

    samples = 0

    @property
    def seconds(self) -> float:
        return self.samples / self.input_format.sample_rate

    def open_stream(self) -> CountingStream:  # type: ignore[override]
        return CountingStream(super().open_stream(), self)


@dataclass
class Calls:
    """A CallFactory from fake stages; the caller's words come from the `script` parameter."""

    agent: ScriptedAgent = field(default_factory=lambda: ScriptedAgent(echo))
    made: dict[str, Call] = field(default_factory=dict)
    params: dict[str, Mapping[str, str]] = field(default_factory=dict)
    media: dict[str, CallMedia] = field(default_factory=dict)
    stt: dict[str, CountingSTT] = field(default_factory=dict)

    def __call__(
        self, call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
    ) -> Call:
        stt = CountingSTT(SCRIPTS[params.get("script", "")])
        tts = FakeTTS(seconds_per_word=SECONDS_PER_WORD, chunk_s=0.2)
        call = Call(call_id, media, Stages(FakeVAD(), stt, self.agent, tts), send, policy=POLICY)
        self.made[call_id] = call
        self.params[call_id] = params
        self.media[call_id] = media
        self.stt[call_id] = stt
        return call

    def only(self) -> Call:
        """The one call made."""
        [call] = self.made.values()
        return call

    def find(self, script: str) -> Call | None:
        """The call made with parameter `script`, if any."""
        found = [self.made[i] for i, p in self.params.items() if p.get("script") == script]
        return found[0] if found else None


def app_with(mount: Callable[[FastAPI], None]) -> FastAPI:
    app = create_app(Settings(), loaders={}, bridges=False)
    mount(app)
    return app


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a free loopback port; yields `ws://127.0.0.1:<port>`."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "uvicorn failed to start"
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()


async def until(done: Callable[[], bool], within: float = 3.0) -> None:
    """Wait until `done()` holds; fails after `within` seconds."""
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110 - the conditions are on objects with no event
            await asyncio.sleep(0.02)


def count_audio_frames(far_end: FarEnd) -> list[bytes]:
    """Record every caller audio frame `far_end` is asked to send (in its audio format)."""
    sent: list[bytes] = []
    audio = far_end.audio

    def counted(data: bytes) -> Frame:
        sent.append(data)
        return audio(data)

    far_end.audio = counted  # type: ignore[method-assign]
    return sent


def seconds_of(frames: Sequence[bytes], fmt: AudioFormat) -> float:
    return sum(fmt.duration(frame) for frame in frames)


def lines(call: Call, speaker: Speaker) -> list[str]:
    return [entry.text for entry in call.history if entry.speaker is speaker]


def errors_heard(heard: Sequence[tuple[float, object]]) -> list[object]:
    """What a far end reported as a protocol violation by the server."""
    return [h for _, h in heard if getattr(h, "kind", None) == "error"]
