"""The rendered-speech cache: keys, the memory LRU and the WAV folder."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from opusagent.voice.tts.cache import AudioCache, VoiceKey, cache_key, default_cache_dir

VOICE = VoiceKey("piper", "en_US-joe-medium.onnx:63201294", 1.0, 22050)
RATE = VOICE.sample_rate


def pcm(seconds: float, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return rng.integers(-8000, 8000, round(seconds * RATE), dtype=np.int16).astype("<i2").tobytes()


def test_the_key_depends_on_every_field_and_the_text() -> None:
    base = cache_key(VOICE, "Hello.")
    assert cache_key(VoiceKey("piper", VOICE.voice, 1.0, RATE), "Hello.") == base
    variants = [
        cache_key(VoiceKey("flite", VOICE.voice, 1.0, RATE), "Hello."),
        cache_key(VoiceKey("piper", "other.onnx:1", 1.0, RATE), "Hello."),
        cache_key(VoiceKey("piper", VOICE.voice, 1.1, RATE), "Hello."),
        cache_key(VoiceKey("piper", VOICE.voice, 1.0, 16000), "Hello."),
        cache_key(VOICE, "Hello!"),
        cache_key(VOICE, "hello."),
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_a_voice_key_needs_a_positive_speed_and_rate() -> None:
    with pytest.raises(ValueError, match="speed"):
        VoiceKey("piper", "v", 0.0, RATE)
    with pytest.raises(ValueError, match="sample_rate"):
        VoiceKey("piper", "v", 1.0, 0)


def test_memory_hit_and_miss(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path)
    assert cache.get("a") is None
    cache.put("a", b"\x01\x00")
    assert cache.get("a") == b"\x01\x00"
    assert len(cache) == 1
    assert cache.memory_used == 2


def test_memory_is_bounded_by_bytes_least_recently_used_first(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, memory_bytes=300)
    for key in "abc":
        cache.put(key, bytes(100))
    assert cache.get("a") is not None  # now b is the least recently used
    cache.put("d", bytes(100))
    assert cache.get("b") is None
    assert {k for k in "acd" if cache.get(k) is not None} == {"a", "c", "d"}
    assert cache.memory_used == 300
    cache.put("e", bytes(250))
    assert cache.memory_used <= 300
    assert cache.get("e") is not None


def test_replacing_an_entry_counts_its_bytes_once(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, memory_bytes=1000)
    cache.put("a", bytes(400))
    cache.put("a", bytes(600))
    assert cache.memory_used == 600
    assert len(cache) == 1


def test_audio_larger_than_the_bound_is_not_held(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path, memory_bytes=100)
    cache.put("small", bytes(50))
    cache.put("big", bytes(101))
    assert cache.get("big") is None
    assert cache.get("small") is not None


def test_disk_entries_survive_a_new_instance(tmp_path: Path) -> None:
    audio = pcm(0.7)
    AudioCache(tmp_path).save("k", audio, RATE)
    fresh = AudioCache(tmp_path)
    assert fresh.load("k", RATE) == audio
    assert fresh.get("k") is None  # disk and memory are separate tiers
    assert fresh.load("missing", RATE) is None


def test_the_folder_is_created_on_first_write_and_no_temp_file_stays(tmp_path: Path) -> None:
    folder = tmp_path / "deep" / "tts"
    cache = AudioCache(folder)
    assert not folder.exists()
    cache.save("k", pcm(0.1), RATE)
    assert [p.name for p in folder.iterdir()] == ["k.wav"]


def test_an_empty_rendering_round_trips(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path)
    cache.save("k", b"", RATE)
    assert cache.load("k", RATE) == b""


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: b"",  # empty
        lambda data: b"not a wav file at all" * 10,  # garbage
        lambda data: data[:44],  # header only
    ],
    ids=["truncated", "empty", "garbage", "header-only"],
)
def test_a_damaged_file_is_ignored_then_rewritten(
    tmp_path: Path, damage: Callable[[bytes], bytes], caplog: pytest.LogCaptureFixture
) -> None:
    cache = AudioCache(tmp_path)
    audio = pcm(0.5)
    cache.save("k", audio, RATE)
    path = cache.path("k")
    path.write_bytes(damage(path.read_bytes()))
    with caplog.at_level(logging.WARNING):
        assert cache.load("k", RATE) is None
    cache.save("k", audio, RATE)
    assert cache.load("k", RATE) == audio


def test_a_file_at_another_rate_is_ignored(tmp_path: Path) -> None:
    cache = AudioCache(tmp_path)
    cache.save("k", pcm(0.2), 16000)
    assert cache.load("k", RATE) is None


def test_an_unwritable_folder_only_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("in the way")
    cache = AudioCache(blocker / "tts")
    with caplog.at_level(logging.WARNING):
        cache.save("k", pcm(0.1), RATE)
    assert "could not write" in caplog.text
    assert cache.load("k", RATE) is None


def test_default_folder_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "opusagent" / "tts"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "opusagent" / "tts"
