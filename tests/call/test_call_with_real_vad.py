"""A Call on the real Silero VAD and its batched scheduler, hearing real speech in real time."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pytest

from opusagent.audio.formats import MULAW_8K, AudioFormat, Encoding
from opusagent.audio.resample import AudioConverter
from opusagent.call.call import Stages
from opusagent.call.stages import TurnKind, UserTurn
from opusagent.testing import FakeTTS, ScriptedAgent, ScriptedSTT, Utterance, play_audio
from opusagent.voice.vad import SileroVAD

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]
TEXT = "I would like to replace my card please"
LEAD_IN_S = 1.0
TAIL_S = 1.5


def as_mulaw_frames(samples: npt.NDArray[np.int16], rate: int) -> list[bytes]:
    converter = AudioConverter(AudioFormat(Encoding.PCM16, rate), MULAW_8K)
    audio = converter.to_bytes(samples.tobytes()) + converter.flush_bytes()
    audio = b"\xff" * round(LEAD_IN_S * 8000) + audio + b"\xff" * round(TAIL_S * 8000)
    return [audio[i : i + 160] for i in range(0, len(audio) - 159, 160)]


@pytest.mark.slow
async def test_real_speech_ends_a_turn_and_gets_a_reply(speak: Speak) -> None:
    samples, rate = speak(TEXT)
    speech_s = len(samples) / rate
    voiced_until_s = np.flatnonzero(np.abs(samples.astype(np.int32)) > 500)[-1] / rate
    frames = as_mulaw_frames(samples, rate)
    vad = SileroVAD()
    agent = ScriptedAgent(lambda turn: "Hello." if turn.kind is TurnKind.START else "Sure.")
    stt = ScriptedSTT([Utterance(LEAD_IN_S, LEAD_IN_S + speech_s, TEXT)])
    try:
        result = await play_audio(
            b"".join(frames), Stages(vad=vad, stt=stt, agent=agent, tts=FakeTTS())
        )
    finally:
        await vad.aclose()
    call, started = result.call, result.started_at

    speech_turns: list[UserTurn] = [t for t in agent.turns if t.kind is TurnKind.SPEECH]
    assert [t.text for t in speech_turns] == [TEXT]
    (record,) = [t for t in call.turns if t.kind is TurnKind.SPEECH]
    spoken_until = started + LEAD_IN_S + voiced_until_s
    # Silero's end of speech lands within a few 32 ms windows of the last voiced sample.
    assert abs(record.input_ended_at - spoken_until) < 0.15
    assert record.response_latency is not None
    assert record.response_latency < call.policy.end_of_turn_silence_ms / 1000 + 0.2
    assert vad.stats.inferences > 0
