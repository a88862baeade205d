"""The fallback lines: rendered once per voice and kept as outbound frames; taken from the agent
file, with its hand-off."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from pydantic import ValidationError

from opusagent.agent.fsa.agent import FsaAgent
from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.agent.fsa.spec import AgentSpec
from opusagent.audio.formats import MULAW_8K, AudioFormat
from opusagent.call.events import HangUp, Transfer
from opusagent.call.fallback import (
    DEFAULT_FALLBACK_SAY,
    DEFAULT_GOODBYE_SAY,
    DEFAULT_TRANSFER_SAY,
    SpokenLines,
)
from opusagent.call.stages import SpeechChunk
from opusagent.testing import FakeTTS

BANK = Path(__file__).parents[2] / "examples" / "agents" / "bank.yaml"
LINE = "Sorry, say that again."  # 4 words: 1.2 s of fake speech


class CountingTTS(FakeTTS):
    def __init__(self) -> None:
        super().__init__(seconds_per_word=0.3)
        self.texts: list[str] = []

    async def synthesize(self, text: AsyncIterator[str]) -> AsyncIterator[SpeechChunk]:
        words = [part async for part in text]
        self.texts.append("".join(words))

        async def again() -> AsyncIterator[str]:
            for part in words:
                yield part

        async for chunk in super().synthesize(again()):
            yield chunk


async def test_a_line_is_rendered_once_and_kept_as_exact_frames() -> None:
    tts, lines = CountingTTS(), SpokenLines()

    await lines.prepare(tts, [LINE], MULAW_8K, 20)
    await lines.prepare(tts, [LINE], MULAW_8K, 20)
    frames = lines.frames(LINE, MULAW_8K, 20)

    assert tts.texts == [LINE]
    assert frames is not None and {len(frame) for frame in frames} == {160}
    assert len(frames) * 0.02 == pytest.approx(1.2, abs=0.02)


async def test_each_outbound_format_has_its_own_frames() -> None:
    tts, lines = CountingTTS(), SpokenLines()
    wideband = AudioFormat(MULAW_8K.encoding, 16000)

    await lines.prepare(tts, [LINE], MULAW_8K, 20)

    assert lines.frames(LINE, wideband, 20) is None
    await lines.prepare(tts, [LINE], wideband, 20)
    frames = lines.frames(LINE, wideband, 20)
    assert frames is not None and {len(frame) for frame in frames} == {320}


async def test_a_line_that_fails_to_render_is_not_kept() -> None:
    class Mute(FakeTTS):
        async def synthesize(self, text: AsyncIterator[str]) -> AsyncIterator[SpeechChunk]:
            async for _ in text:
                pass
            return
            yield  # an async generator that speaks nothing

    lines = SpokenLines()
    with pytest.raises(ValueError, match="no audio"):
        await lines.prepare(Mute(), [LINE], MULAW_8K, 20)
    assert lines.frames(LINE, MULAW_8K, 20) is None


def test_calls_sharing_a_synthesiser_share_its_lines() -> None:
    tts = FakeTTS()

    assert SpokenLines.of(tts) is SpokenLines.of(tts)
    assert SpokenLines.of(FakeTTS()) is not SpokenLines.of(tts)


def fallback_of(**fields: object) -> tuple[str, int, str, object]:
    controller = AgentCatalog.load([BANK]).entry().controller
    spec = controller.spec.model_copy(update=fields)
    fallback = FsaAgent(dataclasses.replace(controller, spec=spec), call_id="CA1").fallback
    return fallback.say, fallback.limit, fallback.handoff_say, fallback.handoff


def test_the_agent_file_s_fallback_defaults_to_a_polite_hang_up() -> None:
    assert fallback_of() == (DEFAULT_FALLBACK_SAY, 3, DEFAULT_GOODBYE_SAY, HangUp("stage_failures"))


def test_an_agent_file_with_a_transfer_target_hands_off_by_transferring() -> None:
    fields = {"fallback_say": "Pardon?", "fallback_limit": 2, "fallback_transfer": "+15550100"}

    assert fallback_of(**fields) == (
        "Pardon?",
        2,
        DEFAULT_TRANSFER_SAY,
        Transfer("+15550100", "stage_failures"),
    )


def test_the_hand_off_line_can_be_written_in_the_agent_file() -> None:
    _, _, say, _ = fallback_of(fallback_handoff_say="Goodbye for now.")

    assert say == "Goodbye for now."


@pytest.mark.parametrize(
    "fields", [{"fallback_say": ""}, {"fallback_limit": -1}, {"fallback_transfer": ""}]
)
def test_bad_fallback_fields_are_refused(fields: dict[str, object]) -> None:
    spec: dict[str, object] = {"name": "a", "initial": "s", "states": {"s": {"final": True}}}

    with pytest.raises(ValidationError):
        AgentSpec.model_validate({**spec, **fields})


def test_the_editor_schema_documents_the_fallback_fields() -> None:
    properties: Sequence[str] = AgentSpec.model_json_schema()["properties"]

    assert {"fallback_say", "fallback_limit", "fallback_transfer"} <= set(properties)
