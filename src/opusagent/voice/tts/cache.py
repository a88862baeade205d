"""Rendered speech kept for reuse: an LRU in memory, WAV files on disk.

An entry is keyed by everything that decides how a piece sounds (engine, voice, speed, sample
rate) and its text. The memory tier is bounded by bytes and used from the event loop only; the
disk tier survives restarts and its blocking methods belong on a thread. A disk file is written
to a temporary name and renamed, so readers see a whole file or none; a file that does not
decode exactly as written (truncated, corrupt, other format) is treated as missing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import tempfile
import wave
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
"""Bump when the key or the file layout changes: old entries then simply stop matching."""
DEFAULT_MEMORY_BYTES = 64 * 1024 * 1024


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/opusagent/tts`, else `~/.cache/opusagent/tts`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "opusagent" / "tts"


@dataclass(frozen=True, slots=True)
class VoiceKey:
    """What besides the text decides the sound of a rendering; any change means new audio."""

    engine: str
    voice: str
    speed: float
    sample_rate: int

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, got {self.speed}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")


def cache_key(voice: VoiceKey, text: str) -> str:
    """A stable hex digest naming one rendering."""
    fields = [
        _FORMAT_VERSION,
        voice.engine,
        voice.voice,
        float(voice.speed),
        voice.sample_rate,
        text,
    ]
    return hashlib.sha256(json.dumps(fields).encode()).hexdigest()


class AudioCache:
    """Mono PCM16 renderings by key: an LRU bounded by `memory_bytes`, and a folder of WAVs.

    The folder is created on the first write. Disk errors are logged, never raised: a cache
    that cannot write only costs a re-render.
    """

    def __init__(self, folder: Path | str, *, memory_bytes: int = DEFAULT_MEMORY_BYTES) -> None:
        if memory_bytes < 0:
            raise ValueError(f"memory_bytes must not be negative, got {memory_bytes}")
        self.folder = Path(folder)
        self.memory_bytes = memory_bytes
        self._memory: OrderedDict[str, bytes] = OrderedDict()
        self._used = 0

    @property
    def memory_used(self) -> int:
        """Bytes of audio held in memory."""
        return self._used

    def __len__(self) -> int:
        return len(self._memory)

    def get(self, key: str) -> bytes | None:
        """The audio held in memory for `key`, marking it recently used."""
        pcm = self._memory.get(key)
        if pcm is not None:
            self._memory.move_to_end(key)
        return pcm

    def put(self, key: str, pcm: bytes) -> None:
        """Hold audio in memory, evicting the least recently used beyond the bound."""
        old = self._memory.pop(key, None)
        if old is not None:
            self._used -= len(old)
        if len(pcm) > self.memory_bytes:
            return
        self._memory[key] = pcm
        self._used += len(pcm)
        while self._used > self.memory_bytes:
            _, evicted = self._memory.popitem(last=False)
            self._used -= len(evicted)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.wav"

    def load(self, key: str, sample_rate: int) -> bytes | None:
        """Read audio from disk (blocking); None when absent or not exactly as written."""
        try:
            data = self.path(key).read_bytes()
        except OSError:
            return None
        try:
            with wave.open(io.BytesIO(data)) as wav:
                frames = wav.getnframes()
                pcm: bytes = wav.readframes(frames)
                intact = (
                    wav.getnchannels() == 1
                    and wav.getsampwidth() == 2
                    and wav.getframerate() == sample_rate
                    and wav.getcomptype() == "NONE"
                    and len(pcm) == 2 * frames
                )
        except (wave.Error, EOFError):
            intact = False
        if not intact:
            log.warning("ignoring damaged TTS cache file %s", self.path(key))
            return None
        return pcm

    def save(self, key: str, pcm: bytes, sample_rate: int) -> None:
        """Write audio to disk (blocking), replacing any previous file atomically."""
        target = self.path(key)
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(sample_rate)
            wav.writeframes(pcm)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(buffer.getvalue())
                Path(temp).replace(target)
            except BaseException:
                with contextlib.suppress(OSError):
                    Path(temp).unlink()
                raise
        except OSError as exc:
            log.warning("could not write TTS cache file %s: %s", target, exc)
