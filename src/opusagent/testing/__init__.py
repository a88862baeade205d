"""Test calls in virtual time: scripted caller timelines against a real Call with fake stages.

Public API: `Timeline`, `run_timeline`, `TimelineResult`, the fake stages (`FakeVAD`,
`ScriptedSTT`, `ScriptedAgent`, `FakeTTS`), `TwilioLikeProvider`, `play_timeline` (several
calls on one loop), `play_audio` (a call with recorded audio) and `run_in_virtual_time`.
"""

from opusagent.testing.fakes import FakeTTS, FakeVAD, ScriptedAgent, ScriptedSTT, Utterance
from opusagent.testing.timeline import (
    AudioCallResult,
    Played,
    Timeline,
    TimelineResult,
    TwilioLikeProvider,
    play_audio,
    play_timeline,
    run_timeline,
)
from opusagent.testing.virtual_time import VirtualTimeLoop, run_in_virtual_time

__all__ = [
    "AudioCallResult",
    "FakeTTS",
    "FakeVAD",
    "Played",
    "ScriptedAgent",
    "ScriptedSTT",
    "Timeline",
    "TimelineResult",
    "TwilioLikeProvider",
    "Utterance",
    "VirtualTimeLoop",
    "play_audio",
    "play_timeline",
    "run_in_virtual_time",
    "run_timeline",
]
