"""A server for measuring the framework alone: the real app, bridges, `Call` and Silero VAD, with
instant fake STT, agent and TTS, so what a load test measures is our own cost.

Every call gets the process's shared (batched) Silero VAD, an STT that hears "hello" the moment
the VAD ends the caller's turn, a scripted agent that answers every turn with `REPLY` (after
`reply_delay_s`, when set), and `FakeTTS`, which turns the reply into a tone at once. The turn
ends after `silence_ms` of VAD silence; there are no no-input prompts. The Twilio, AudioCodes,
ACS and browser bridges are served at their usual paths, with no authentication;
`GET /bench/ready` tells which process answered and whether its VAD is loaded.

    python -m opusagent.loadtest.bench_server --port 8765 [--silence-ms 200] [--workers 2]

`--workers K` runs K server processes on one port (uvicorn's workers: the parent process holds
the socket and each worker accepts from it); each loads its own VAD. Options travel to the
workers in the `LOADTEST_BENCH_OPTIONS` environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass

import uvicorn
from fastapi import FastAPI

from opusagent.app import create_app
from opusagent.audio.formats import AudioFormat, Encoding
from opusagent.bridges.acs import mount_acs
from opusagent.bridges.audiocodes import mount_audiocodes
from opusagent.bridges.browser import mount_browser
from opusagent.bridges.session import TRY_AGAIN_LATER, StreamRefusedError
from opusagent.bridges.twilio_media import mount_twilio_media
from opusagent.call.call import Call, SendOutput, Stages
from opusagent.call.events import CallMedia
from opusagent.call.stages import VAD, Samples, Transcript, UserTurn
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.testing import FakeTTS, ScriptedAgent

HEARD = "hello"
REPLY = "Okay, noted."
SECONDS_PER_WORD = 0.25
TTS_CHUNK_S = 0.1
LISTEN_RATE = 16000
OPTIONS_VARIABLE = "LOADTEST_BENCH_OPTIONS"
READY_PATH = "/bench/ready"
READY_WITHIN_S = 120.0
"""Start-up (imports, VAD load and warm-up) on a busy machine."""
STOP_WITHIN_S = 15.0


@dataclass(frozen=True, slots=True)
class BenchOptions:
    silence_ms: int = 200
    """VAD silence that ends the caller's turn."""
    reply_delay_s: float = 0.0
    """How long the agent thinks before answering (0: at once)."""


class _InstantStream:
    """Hears `HEARD` the moment the VAD ends an utterance."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[Transcript | None] = asyncio.Queue()

    def push(self, samples: Samples) -> None:
        """Nothing to recognise: the transcript is known."""

    def speech_started(self) -> None:
        """Nothing to gate."""

    def expect(self, phrases: Sequence[str] | None) -> None:
        """Hints change nothing."""

    def speech_ended(self) -> None:
        self._queue.put_nowait(Transcript(HEARD, final=True, confidence=1.0))

    async def results(self) -> AsyncIterator[Transcript]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def aclose(self) -> None:
        self._queue.put_nowait(None)


class InstantSTT:
    """An STT that costs nothing: every utterance is `HEARD`, final at once."""

    @property
    def input_format(self) -> AudioFormat:
        return AudioFormat(Encoding.PCM16, LISTEN_RATE)

    def open_stream(self) -> _InstantStream:
        return _InstantStream()


def _reply(turn: UserTurn) -> str:
    return REPLY


class BenchCalls:
    """The call factory: each call gets the shared VAD and its own instant fake stages."""

    def __init__(self, options: BenchOptions, vad: Callable[[], VAD | None]) -> None:
        self._options = options
        self._vad = vad
        self._stt = InstantSTT()
        self._tts = FakeTTS(seconds_per_word=SECONDS_PER_WORD, chunk_s=TTS_CHUNK_S)
        self._policy = TurnPolicy(end_of_turn_silence_ms=options.silence_ms, no_input_timeout_ms=0)

    @property
    def ready(self) -> bool:
        return self._vad() is not None

    def __call__(
        self, call_id: str, media: CallMedia, send: SendOutput, params: Mapping[str, str]
    ) -> Call:
        vad = self._vad()
        if vad is None:
            raise StreamRefusedError(
                f"call {call_id} refused: the VAD is still loading (see /ready)",
                code=TRY_AGAIN_LATER,
            )
        agent = ScriptedAgent(_reply, part_delay_s=self._options.reply_delay_s, record_turns=False)
        stages = Stages(vad, self._stt, agent, self._tts)
        return Call(call_id, media, stages, send, policy=self._policy)


def bench_app(options: BenchOptions, vad: VAD | None = None) -> FastAPI:
    """The app with fake stages; the real Silero VAD (loaded at start-up, see `/ready`) unless
    `vad` is given."""
    app = create_app(Settings(), loaders={}, bridges=False)
    voice = app.state.voice
    if vad is None:
        app.state.readiness.register("vad", voice.load_vad)
    calls = BenchCalls(options, (lambda: vad) if vad is not None else lambda: voice.vad)
    mount_twilio_media(app, calls, auth_token=None, public_url=None)
    mount_audiocodes(app, calls, token=None)
    mount_acs(app, calls, token=None)
    mount_browser(app, calls)

    @app.get(READY_PATH, summary="Bench: this worker process and whether its VAD is loaded")
    async def worker_ready() -> dict[str, object]:
        return {"pid": os.getpid(), "ready": calls.ready}

    return app


def app_from_env() -> FastAPI:
    """`bench_app` with the options in `LOADTEST_BENCH_OPTIONS` (for uvicorn's workers)."""
    return bench_app(BenchOptions(**json.loads(os.environ.get(OPTIONS_VARIABLE, "{}"))))


@dataclass(frozen=True, slots=True)
class RunningServer:
    url: str
    """ws://127.0.0.1:<port>"""
    pid: int


@contextlib.contextmanager
def bench_server_process(
    options: BenchOptions, *, port: int, workers: int = 1, ready_within_s: float = READY_WITHIN_S
) -> Iterator[RunningServer]:
    """Run the bench server as a separate process (this interpreter) until the block ends;
    yields once every worker process has loaded its VAD."""
    command = [
        sys.executable,
        "-m",
        __spec__.name if __spec__ is not None else "opusagent.loadtest.bench_server",
        f"--port={port}",
        f"--silence-ms={options.silence_ms}",
        f"--reply-delay-ms={options.reply_delay_s * 1000}",
        f"--workers={workers}",
    ]
    with server_process(
        command, port=port, workers=workers, ready_within_s=ready_within_s
    ) as server:
        yield server


@contextlib.contextmanager
def server_process(
    command: Sequence[str],
    *,
    port: int,
    workers: int = 1,
    ready_within_s: float = READY_WITHIN_S,
    ready_path: str = READY_PATH,
) -> Iterator[RunningServer]:
    """Run `command`, a server on `port`, until the block ends; yields once `workers` different
    processes have answered `GET ready_path` that they are ready: `{"pid", "ready"}` as this
    module's (or another framework's, for a comparison), or any 200 answer (the app's `/ready`)."""
    process = subprocess.Popen(command)
    try:
        _wait_ready(f"http://127.0.0.1:{port}{ready_path}", process, workers, ready_within_s)
        yield RunningServer(f"ws://127.0.0.1:{port}", process.pid)
    finally:
        process.terminate()
        try:
            process.wait(STOP_WITHIN_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_ready(url: str, process: subprocess.Popen[bytes], workers: int, within_s: float) -> None:
    """Until `workers` different processes have answered that they are ready (each request is
    a new connection, which any worker may accept); an answer without a pid is the process's."""
    deadline = time.monotonic() + within_s
    ready: set[int] = set()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
            answer = json.loads(response.read())
            if answer.get("ready", True):
                ready.add(answer.get("pid", process.pid))
        if len(ready) >= workers:
            return
        time.sleep(0.1)
    raise RuntimeError(
        f"{len(ready)} of {workers} server processes were ready within {within_s:g} s"
    )


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--silence-ms", type=int, default=200)
    parser.add_argument("--reply-delay-ms", type=float, default=0.0)
    parser.add_argument("--workers", type=int, default=1, help="server processes (default 1)")
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    options = BenchOptions(args.silence_ms, args.reply_delay_ms / 1000)
    os.environ[OPTIONS_VARIABLE] = json.dumps(asdict(options))
    uvicorn.run(
        "opusagent.loadtest.bench_server:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers if args.workers > 1 else None,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
