"""Audio mode with the offline stack: the caller's words through TTS, the telephone codec and
the server's STT; the agent's audio back through the caller's own STT, over real bridges."""

from __future__ import annotations

from pathlib import Path

import pytest

from opusagent.agent.fsa.loader import load_agent
from opusagent.config import Settings
from opusagent.simulate.report import write_reports
from opusagent.simulate.runner import Plan, run_all
from opusagent.simulate.scenarios import load_scenario
from opusagent.simulate.server import serve_agent, served_settings
from opusagent.simulate.voice import CallerVoice

from .helpers import AGENTS, SCENARIOS, Outline, persona_of

pytestmark = pytest.mark.slow


async def test_two_scenarios_pass_over_two_bridges(tmp_path: Path) -> None:
    lost_card = load_scenario(SCENARIOS / "bank" / "lost_card.yaml")
    keypad = load_scenario(SCENARIOS / "bank" / "keypad_caller.yaml")
    plans = [
        Plan(lost_card, persona_of(lost_card), 1, "audio", "twilio"),
        Plan(keypad, persona_of(keypad), 1, "audio", "audiocodes"),
    ]
    settings = served_settings(Settings(), AGENTS / "bank.yaml", tmp_path)
    async with serve_agent(settings, "audio") as server:
        voice = CallerVoice(settings)
        await voice.load()
        try:
            results = await run_all(plans, server, voice, tmp_path, concurrency=1)
        finally:
            await voice.aclose()

    problems = {
        r.plan.label: [v.explanation for v in r.verdicts if not v.passed] or r.error
        for r in results
        if r.status != "passed"
    }
    assert not problems
    spoken, keyed = results
    assert spoken.record is not None and keyed.record is not None
    assert "four two one seven" in [e.text for e in spoken.record.audit], "said, recognised"
    assert "4217" in [e.dtmf for e in keyed.record.audit], "keyed over AudioCodes"
    assert spoken.record.recording_path, "the server recorded the call"
    latencies = [e.latency_s for e in spoken.events if e.latency_s is not None]
    assert len(latencies) >= 4 and all(0 < s < 5 for s in latencies)
    index = write_reports(results, load_agent(AGENTS / "bank.yaml").spec, tmp_path)
    page = Outline.of((index.parent / "lost_card-1.html").read_text())
    sources = [a.get("src") or "" for tag, a in page.attributes if tag == "audio"]
    assert len(sources) == 1 and sources[0].startswith("data:audio/wav;base64,")
    assert "recording" in page.ids
