"""Speech synthesis: streaming by sentence and clause, with a memory and disk cache.

`EspeakTTS` and `FliteTTS` need only their Debian programs; `PiperTTS` (natural speech) needs
the optional `piper` extra and is imported from `opusagent.voice.tts.piper`, so that importing
this package never loads GPL code.
"""

from opusagent.voice.tts.cache import AudioCache, VoiceKey, cache_key, default_cache_dir
from opusagent.voice.tts.engine import (
    EngineUnavailableError,
    StreamingOptions,
    StreamingTTS,
    SynthesisError,
)
from opusagent.voice.tts.espeak import EspeakTTS
from opusagent.voice.tts.flite import FliteTTS
from opusagent.voice.tts.sentences import SentenceSplitter, SplitRules, split_text

__all__ = [
    "AudioCache",
    "EngineUnavailableError",
    "EspeakTTS",
    "FliteTTS",
    "SentenceSplitter",
    "SplitRules",
    "StreamingOptions",
    "StreamingTTS",
    "SynthesisError",
    "VoiceKey",
    "cache_key",
    "default_cache_dir",
    "split_text",
]
