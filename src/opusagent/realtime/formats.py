"""Audio formats on the Realtime wire, and which one a call's bridge should use.

GA format objects (CATALOG §6.4, openai-python `realtime_audio_formats.py`): `{"type": "audio/pcm",
"rate": 24000}` (16-bit little-endian mono, 24 kHz only), `{"type": "audio/pcmu"}` and
`{"type": "audio/pcma"}` (G.711 at 8 kHz). The beta interface named them `pcm16`, `g711_ulaw` and
`g711_alaw`.
"""

from __future__ import annotations

from typing import Any

from opusagent.audio.formats import ALAW_8K, MULAW_8K, PCM16_24K, AudioFormat
from opusagent.realtime.events import FormatSpec

_SPECS: dict[AudioFormat, FormatSpec] = {
    PCM16_24K: FormatSpec(type="audio/pcm", rate=24000),
    MULAW_8K: FormatSpec(type="audio/pcmu"),
    ALAW_8K: FormatSpec(type="audio/pcma"),
}
_GA: dict[str, AudioFormat] = {spec.type: fmt for fmt, spec in _SPECS.items()}
_BETA: dict[str, AudioFormat] = {"pcm16": PCM16_24K, "g711_ulaw": MULAW_8K, "g711_alaw": ALAW_8K}
MODEL_FORMATS = frozenset(_SPECS)
"""The formats the model takes and produces."""


def model_format_for(bridge: AudioFormat) -> AudioFormat:
    """The model's format for a bridge's: G.711 as is (no resampling, as the official Twilio
    sample does), anything else as PCM16 at 24 kHz."""
    return bridge if bridge in MODEL_FORMATS else PCM16_24K


def format_spec(fmt: AudioFormat) -> FormatSpec:
    """The GA format object of one of `MODEL_FORMATS`."""
    try:
        return _SPECS[fmt]
    except KeyError:
        known = ", ".join(sorted(_GA))
        raise ValueError(f"the Realtime model does not take {fmt}; it takes {known}") from None


def parse_format(value: FormatSpec | dict[str, Any] | str | None) -> AudioFormat:
    """A GA format object (or a beta format string); None is the default, PCM16 24 kHz."""
    if value is None:
        return PCM16_24K
    if isinstance(value, str):
        try:
            return _BETA[value]
        except KeyError:
            raise ValueError(f"unknown audio format {value!r}; known: {sorted(_BETA)}") from None
    spec = value if isinstance(value, FormatSpec) else FormatSpec.model_validate(value)
    return _GA[spec.type]
