"""Reports render: each run's page (criteria, path on the graph, latency plot, transcript,
decisions) and the summary, parsed as HTML; the JSON says the same."""

from __future__ import annotations

import json
from pathlib import Path

from opusagent.agent.fsa.loader import load_agent
from opusagent.simulate.lines import Event
from opusagent.simulate.report import (
    PATH_COLOUR,
    VISITED_FILL,
    latency_svg,
    path_svg,
    write_reports,
)
from opusagent.simulate.scenarios import load_scenario

from .helpers import AGENTS, SCENARIOS, Outline, simulate


async def test_reports_render_every_part(tmp_path: Path) -> None:
    scenarios = [
        load_scenario(SCENARIOS / "bank" / name)
        for name in ("lost_card.yaml", "wrong_birth_date_thrice.yaml", "silent_caller.yaml")
    ]
    results = await simulate(AGENTS / "bank.yaml", scenarios, tmp_path)
    spec = load_agent(AGENTS / "bank.yaml").spec

    index = write_reports(results, spec, tmp_path)

    summary = Outline.of(index.read_text())
    links = {a.get("href") for tag, a in summary.attributes if tag == "a"}
    assert links == {"lost_card-1.html", "wrong_birth_date_thrice-1.html", "silent_caller-1.html"}
    assert "2 of 2 judged runs passed (100%); 3 runs in all." in summary.all_text()
    page = Outline.of((tmp_path / "lost_card-1.html").read_text())
    assert {"criteria", "path", "latency", "transcript", "audit"} <= page.ids
    assert page.tags["svg"] == 2, "the graph and the latency plot"
    text = page.all_text()
    assert "reaches card_replaced" in text and "FAIL" not in text
    assert "I lost my card." in text and "Thanks. For security, what is your date of birth?" in text
    filled = [a for tag, a in page.attributes if tag == "path" and a.get("fill") == VISITED_FILL]
    assert len(filled) == 7, "each state of the path is filled"
    data = json.loads((tmp_path / "lost_card-1.json").read_text())
    assert data["status"] == "passed"
    assert data["callee"]["final_state"] == "card_replaced"
    assert (
        json.loads((tmp_path / "summary.json").read_text())["scenarios"]["silent_caller"]["skipped"]
        == 1
    )


def test_the_path_is_drawn_on_the_graph() -> None:
    spec = load_agent(AGENTS / "bank.yaml").spec

    drawn = path_svg(spec, ["welcome", "identify", "handoff"])

    outline = Outline.of(drawn)
    thick = [
        a
        for tag, a in outline.attributes
        if tag == "path" and a.get("stroke") == PATH_COLOUR and a.get("stroke-width") == "2.5"
    ]
    assert len(thick) == 2, "welcome -> identify -> handoff"
    assert "1" in outline.text and "2" in outline.text and "3" in outline.text


def test_the_latency_plot_has_a_bar_per_answered_turn() -> None:
    events = [
        Event(0.0, 1.0, "agent", "speech", "Hello."),
        Event(1.5, 2.0, "caller", "speech", "I lost my card."),
        Event(2.6, 4.0, "agent", "speech", "Which card?", latency_s=0.6),
        Event(5.0, 6.0, "agent", "speech", "Still there?", latency_s=1.25),
    ]

    outline = Outline.of(latency_svg(events))

    bars = [a for tag, a in outline.attributes if tag == "rect"]
    assert len(bars) == 2
    assert {"600", "1250"} <= set(outline.text)
