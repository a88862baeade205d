"""Shared pieces of the simulation tests: the example packs, runs in text mode on a served
agent, and an HTML outline."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

from opusagent.config import Settings
from opusagent.simulate.personas import DEFAULT_PERSONA, Persona, load_persona
from opusagent.simulate.runner import Bridge, Plan, RunResult, run_all
from opusagent.simulate.scenarios import LoadedScenario, Mode, load_scenarios
from opusagent.simulate.server import serve_agent, served_settings
from opusagent.simulate.voice import CallerVoice

ROOT = Path(__file__).resolve().parents[2]
AGENTS = ROOT / "examples" / "agents"
SCENARIOS = ROOT / "examples" / "scenarios"
PACKS = ("bank", "clinic_triage", "insurance_fnol", "appointment_reminder")


def persona_of(loaded: LoadedScenario) -> Persona:
    persona = loaded.scenario.persona
    return DEFAULT_PERSONA if persona is None else load_persona(loaded.relative(persona))


def plans(
    scenarios: list[LoadedScenario], mode: Mode = "text", runs: int = 1, bridge: Bridge = "twilio"
) -> list[Plan]:
    return [Plan(s, persona_of(s), n, mode, bridge) for s in scenarios for n in range(1, runs + 1)]


async def simulate(
    agent: Path,
    scenarios: list[LoadedScenario] | Path,
    out: Path,
    *,
    mode: Mode = "text",
    runs: int = 1,
    concurrency: int = 1,
    bridge: Bridge = "twilio",
) -> list[RunResult]:
    """Serve `agent` on loopback and run every scenario against it."""
    loaded = load_scenarios(scenarios) if isinstance(scenarios, Path) else scenarios
    settings = served_settings(Settings(), agent, out)
    async with serve_agent(settings, mode) as server:
        voice = CallerVoice(settings) if mode == "audio" else None
        try:
            if voice is not None:
                await voice.load()
            return await run_all(
                plans(loaded, mode, runs, bridge), server, voice, out, concurrency=concurrency
            )
        finally:
            if voice is not None:
                await voice.aclose()


class Outline(HTMLParser):
    """The parts of an HTML page a test looks at: ids, tags, texts and attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.tags: dict[str, int] = {}
        self.text: list[str] = []
        self.attributes: list[tuple[str, dict[str, str | None]]] = []
        self.open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        attributes = dict(attrs)
        self.attributes.append((tag, attributes))
        if attributes.get("id"):
            self.ids.add(str(attributes["id"]))

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())

    @classmethod
    def of(cls, page: str) -> Outline:
        outline = cls()
        outline.feed(page)
        outline.close()
        return outline

    def all_text(self) -> str:
        return " ".join(self.text)
