"""The streaming machinery shared by every engine that renders one piece of text at a time.

An engine subclasses `StreamingTTS` and implements `render` (blocking: text in, mono PCM16 out
at its native rate). The base splits the text stream into pieces, looks each up in the cache,
renders misses on the shared worker pool, and yields each piece's audio in chunks.

A piece is rendered whole, so chunking adds no speed; chunks are kept to `chunk_seconds`
because the Call places a playback mark after every chunk, which makes the record of the words
the caller heard finer. Rendering runs at most `pieces_ahead` pieces in front of the consumer:
the next piece renders while the current one is played, and a barge-in wastes little work.

Command-line engines (espeak-ng, flite) also share `find_program` and `run_wav_command` here.
"""

from __future__ import annotations

import abc
import asyncio
import io
import shutil
import subprocess
import wave
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from opusagent.audio.formats import AudioChunk, AudioFormat, Encoding
from opusagent.call.stages import SpeechChunk
from opusagent.voice.tts.cache import AudioCache, VoiceKey, cache_key, default_cache_dir
from opusagent.voice.tts.sentences import SentenceSplitter, SplitRules, split_text
from opusagent.voice.workers import ModelWorkers

WARM_UP_TEXT = "Hello."
COMMAND_TIMEOUT_S = 30.0


class EngineUnavailableError(RuntimeError):
    """A speech engine's package, program or model is not installed."""


class SynthesisError(RuntimeError):
    """A speech engine failed to render text."""


class StreamingOptions(TypedDict, total=False):
    """Keyword options every engine passes through to `StreamingTTS`."""

    cache: AudioCache | Path | str | None
    rules: SplitRules | None
    pieces_ahead: int
    chunk_seconds: float


@dataclass(slots=True)
class _Piece:
    text: str
    audio: asyncio.Future[bytes]


class StreamingTTS(abc.ABC):
    """A `TTS` built on a blocking renderer of one piece of text.

    `cache` is an `AudioCache` (share one between engines to share its memory bound) or the
    folder of a new one; by default `~/.cache/opusagent/tts`. `synthesize` keeps what it renders
    in memory only, so live replies do not fill the disk; `prerender` also writes to disk, so
    fixed prompts survive a restart. `rules` sets how eagerly clauses are cut; `pieces_ahead`
    is how many pieces may be rendering or waiting before the consumer takes them;
    `chunk_seconds` bounds each yielded chunk.
    """

    def __init__(
        self,
        workers: ModelWorkers,
        voice: VoiceKey,
        *,
        cache: AudioCache | Path | str | None = None,
        rules: SplitRules | None = None,
        pieces_ahead: int = 1,
        chunk_seconds: float = 0.5,
    ) -> None:
        if pieces_ahead < 1:
            raise ValueError(f"pieces_ahead must be at least 1, got {pieces_ahead}")
        if chunk_seconds <= 0:
            raise ValueError(f"chunk_seconds must be positive, got {chunk_seconds}")
        self.voice = voice
        self._workers = workers
        self._format = AudioFormat(Encoding.PCM16, voice.sample_rate)
        if not isinstance(cache, AudioCache):
            cache = AudioCache(default_cache_dir() if cache is None else cache)
        self.cache = cache
        self._rules = rules or SplitRules()
        self._pieces_ahead = pieces_ahead
        self._chunk_bytes = self._format.bytes_for(chunk_seconds) or self._format.frame_bytes

    @abc.abstractmethod
    def render(self, text: str) -> bytes:
        """Speak one piece: mono PCM16 little-endian at `voice.sample_rate`. Blocking."""

    def load(self) -> None:  # noqa: B027 - a no-op for engines with nothing to load
        """Load whatever the engine needs (blocking, idempotent); rendering loads on demand."""

    def warm_up(self) -> None:
        """Load and render once, so the first real piece pays no first-use cost (blocking)."""
        self.load()
        self.render(WARM_UP_TEXT)

    @property
    def output_format(self) -> AudioFormat:
        return self._format

    def split(self, text: str) -> list[str]:
        """The pieces `text` is spoken in, as `synthesize` would cut them."""
        return split_text(text, self._rules)

    async def synthesize(self, text: AsyncIterator[str]) -> AsyncGenerator[SpeechChunk, None]:
        """Speak streaming text piece by piece; closing the stream abandons pending work."""
        queue: asyncio.Queue[_Piece | None] = asyncio.Queue()
        slots = asyncio.Semaphore(self._pieces_ahead)
        producer = asyncio.create_task(self._produce(text, queue, slots))
        current: _Piece | None = None
        try:
            while (current := await queue.get()) is not None:
                pcm = await current.audio
                slots.release()
                for chunk in self._chunks(current.text, pcm):
                    yield chunk
            await producer
        finally:
            producer.cancel()
            pending = [piece.audio for piece in _drain(queue)]
            if current is not None:
                pending.append(current.audio)
            for future in pending:
                future.cancel()
            await asyncio.gather(producer, *pending, return_exceptions=True)

    async def prerender(self, texts: Sequence[str]) -> None:
        """Render every piece of `texts` into memory and onto disk, reusing what is on disk."""
        pieces = dict.fromkeys(piece for text in texts for piece in self.split(text))
        limit = asyncio.Semaphore(self._workers.size)

        async def one(piece: str) -> None:
            key = cache_key(self.voice, piece)
            async with limit:
                stored = await asyncio.to_thread(self.cache.load, key, self.voice.sample_rate)
                pcm = stored if stored is not None else self.cache.get(key)
                if pcm is None:
                    pcm = await self._workers.run(self._render, piece)
                if stored is None:
                    await asyncio.to_thread(self.cache.save, key, pcm, self.voice.sample_rate)
            self.cache.put(key, pcm)

        await asyncio.gather(*(one(piece) for piece in pieces))

    async def _produce(
        self,
        text: AsyncIterator[str],
        queue: asyncio.Queue[_Piece | None],
        slots: asyncio.Semaphore,
    ) -> None:
        """Cut pieces from the text and start fetching each, within the lookahead bound."""
        splitter = SentenceSplitter(self._rules)
        try:
            async for delta in text:
                for piece in splitter.push(delta):
                    await slots.acquire()
                    queue.put_nowait(_Piece(piece, self._fetch(piece)))
            for piece in splitter.flush():
                await slots.acquire()
                queue.put_nowait(_Piece(piece, self._fetch(piece)))
        finally:
            queue.put_nowait(None)
            if isinstance(text, AsyncGenerator):
                await text.aclose()

    def _fetch(self, piece: str) -> asyncio.Future[bytes]:
        """The piece's audio: at once from memory, else from disk or a render on the pool."""
        key = cache_key(self.voice, piece)
        pcm = self.cache.get(key)
        if pcm is not None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(pcm)
            return done
        return asyncio.create_task(self._load_or_render(key, piece))

    async def _load_or_render(self, key: str, piece: str) -> bytes:
        pcm = await asyncio.to_thread(self.cache.load, key, self.voice.sample_rate)
        if pcm is None:
            pcm = await self._workers.run(self._render, piece)
        self.cache.put(key, pcm)
        return pcm

    def _render(self, piece: str) -> bytes:
        pcm = self.render(piece)
        if len(pcm) % 2:
            raise SynthesisError(f"{self.voice.engine} returned a partial sample for {piece!r}")
        return pcm

    def _chunks(self, text: str, pcm: bytes) -> list[SpeechChunk]:
        size = self._chunk_bytes
        return [
            SpeechChunk(AudioChunk(pcm[i : i + size], self._format), text if i == 0 else "")
            for i in range(0, len(pcm), size)
        ]


def _drain(queue: asyncio.Queue[_Piece | None]) -> list[_Piece]:
    items: list[_Piece] = []
    while not queue.empty():
        item = queue.get_nowait()
        if item is not None:
            items.append(item)
    return items


def find_program(name: str, package: str) -> str:
    """The full path of a program, or a clear error naming the Debian package that has it."""
    path = shutil.which(name)
    if path is None:
        raise EngineUnavailableError(
            f"{name} is not installed or not on PATH: apt-get install {package}"
        )
    return path


def run_wav_command(argv: Sequence[str], stdin: bytes = b"") -> tuple[int, bytes]:
    """Run a program that writes a mono 16-bit WAV to stdout; returns (sample rate, PCM).

    The data size in the header is not trusted: espeak-ng streams with a placeholder size.
    """
    try:
        result = subprocess.run(
            argv, input=stdin, capture_output=True, timeout=COMMAND_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SynthesisError(f"{argv[0]} failed: {exc}") from exc
    message = result.stderr.decode(errors="replace").strip()
    if result.returncode != 0 or not result.stdout:
        raise SynthesisError(f"{argv[0]} failed (exit {result.returncode}): {message}")
    try:
        with wave.open(io.BytesIO(result.stdout)) as wav:
            if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
                raise SynthesisError(f"{argv[0]} wrote audio that is not mono 16-bit")
            rate = wav.getframerate()
            pcm = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise SynthesisError(f"{argv[0]} wrote no readable WAV: {exc} {message}") from exc
    return rate, pcm[: len(pcm) - len(pcm) % 2]
