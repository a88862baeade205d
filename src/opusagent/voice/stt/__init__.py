"""Speech recognisers: pocketsphinx (offline, bundled model) and Whisper (optional extra)."""

from opusagent.voice.stt.errors import DecoderError, STTUnavailableError
from opusagent.voice.stt.grammar import Grammar, digits
from opusagent.voice.stt.pocketsphinx import PocketsphinxStream, PocketsphinxSTT
from opusagent.voice.stt.sphinx_model import SphinxModel
from opusagent.voice.stt.whisper import WhisperStream, WhisperSTT

__all__ = [
    "DecoderError",
    "Grammar",
    "PocketsphinxSTT",
    "PocketsphinxStream",
    "STTUnavailableError",
    "SphinxModel",
    "WhisperSTT",
    "WhisperStream",
    "digits",
]
