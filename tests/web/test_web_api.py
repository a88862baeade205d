"""The web routes over loopback: the pages, the agents and their graphs, and the calls in
progress as a real browser-channel call (instant fake speech stages) goes on and ends."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bridges.loopback import until
from bridges.test_served_app import loud, served_app, states
from bridges.twilio_api_fake import serving
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farends import BrowserFarEnd
from opusagent.config import BridgeSettings
from opusagent.testing import Utterance
from opusagent.web.pages import STATIC_DIR

API_KEY = "dashboard-key"
KEY = {"X-API-Key": API_KEY}
LOST_CARD = [Utterance(0.3, 0.8, "I lost my card")]


@asynccontextmanager
async def served(
    utterances: list[Utterance] | None = None, api_key: str | None = None
) -> AsyncIterator[tuple[FastAPI, str, httpx.AsyncClient]]:
    """The real app and agents with fake instant speech stages; yields (app, base URL, client)."""
    app = served_app(utterances or [], bridges=BridgeSettings(api_key=api_key))
    async with serving(app) as base, httpx.AsyncClient(base_url=base) as http:
        yield app, base, http


def error_of(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["status"] == status
    return error


async def to_identify(call: DialSession) -> None:
    """The caller says they lost their card once greeted; the agent asks for its digits."""
    await call.wait_until_quiet(0.3, timeout=10)
    await call.silence(0.3)
    await call.play(loud(0.5), 16000)
    await until(lambda: "identify" in states(call.heard), within=5)


# --- pages ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "content_type", "contains"),
    [
        ("/", "text/html", 'src="/static/softphone.js"'),
        ("/dashboard", "text/html", 'src="/static/dashboard.js"'),
        ("/static/softphone.js", "javascript", "/browser"),
        ("/static/phone-worklet.js", "javascript", 'registerProcessor("phone-processor"'),
        ("/static/style.css", "text/css", ".graph"),
    ],
)
async def test_pages_and_their_files_are_served_without_a_key(
    path: str, content_type: str, contains: str
) -> None:
    async with served(api_key=API_KEY) as (_, _base, http):
        response = await http.get(path)

    assert response.status_code == 200
    assert content_type in response.headers["content-type"]
    assert contains in response.text


async def test_a_missing_static_file_is_a_404_in_the_error_shape() -> None:
    async with served() as (_, _base, http):
        error = error_of(await http.get("/static/nothing.js"), 404)

    assert error["code"] == "not_found"


def test_every_script_a_page_loads_is_in_the_static_folder() -> None:
    for page in ("softphone.html", "dashboard.html"):
        html = (STATIC_DIR / page).read_text()
        for src in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
            assert (STATIC_DIR / src).is_file(), f"{page} loads missing {src}"
    for script in STATIC_DIR.glob("*.js"):
        for module in re.findall(r'from "\./([^"]+)"', script.read_text()):
            assert (STATIC_DIR / module).is_file(), f"{script.name} imports missing {module}"


# --- agents and graphs ---------------------------------------------------------------------


async def test_agents_are_listed_with_their_states_and_the_default() -> None:
    async with served(api_key=API_KEY) as (_, _base, http):
        response = await http.get("/agents")

    assert response.status_code == 200
    listed = response.json()
    assert listed["default"] == "bank_card"
    bank = next(a for a in listed["agents"] if a["name"] == "bank_card")
    assert bank["initial"] == "welcome"
    assert {"name": "identify", "final": False} in bank["states"]
    assert "card_last4" in bank["slots"]


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
async def test_the_svg_graph_has_a_node_titled_by_each_state() -> None:
    async with served() as (_, _base, http):
        listed = (await http.get("/agents")).json()
        response = await http.get("/agents/bank_card/graph.svg")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/svg+xml"
    titles = set(
        re.findall(r'<g id="node\d+" class="node">\s*<title>([^<]+)</title>', response.text)
    )
    bank = next(a for a in listed["agents"] if a["name"] == "bank_card")
    assert {state["name"] for state in bank["states"]} <= titles


@pytest.mark.parametrize(("kind", "starts"), [("dot", 'digraph "bank_card"'), ("mmd", "state")])
async def test_the_graph_comes_as_dot_and_mermaid_too(kind: str, starts: str) -> None:
    async with served() as (_, _base, http):
        response = await http.get(f"/agents/bank_card/graph.{kind}")

    assert response.status_code == 200
    assert response.text.startswith(starts)


async def test_an_unknown_agent_or_graph_format_is_named_in_a_404() -> None:
    async with served() as (_, _base, http):
        agent = error_of(await http.get("/agents/nobody/graph.svg"), 404)
        kind = error_of(await http.get("/agents/bank_card/graph.png"), 404)

    assert "Unknown agent 'nobody'" in agent["message"]
    assert "bank_card" in agent["message"]
    assert kind["message"] == "No graph format 'png'; use one of svg, dot, mmd."


# --- calls in progress ---------------------------------------------------------------------


def ws_url(base: str) -> str:
    return f"{base.replace('http://', 'ws://')}/browser"


async def test_a_call_is_listed_while_it_goes_on_and_not_once_it_ends() -> None:
    async with served(LOST_CARD) as (app, base, http):
        far_end = BrowserFarEnd(16000, call_id="web-1", agent="bank_card")
        async with dial(far_end, ws_url(base)) as call:
            await to_identify(call)
            listed = (await http.get("/live/calls")).json()["calls"]
            await call.hangup()
        await until(lambda: not app.state.live_calls, within=5)
        after = (await http.get("/live/calls")).json()["calls"]

    assert [(c["call_id"], c["bridge"], c["agent"], c["state"]) for c in listed] == [
        ("web-1", "browser", "bank_card", "identify")
    ]
    assert listed[0]["duration_s"] > 0
    assert listed[0]["last_latency_s"] > 0
    assert after == []


async def test_a_live_calls_detail_has_the_conversation_so_far() -> None:
    async with served(LOST_CARD) as (_, base, http):
        far_end = BrowserFarEnd(16000, call_id="web-2", agent="bank_card")
        async with dial(far_end, ws_url(base)) as call:
            await to_identify(call)
            await call.wait_until_quiet(0.3, timeout=10)
            detail = (await http.get("/live/calls/web-2")).json()

    assert detail["path"] == ["welcome", "identify"]
    assert [d["decision"] for d in detail["decisions"]][-1] == "to identify"
    speakers = [(line["speaker"], line["generation"]) for line in detail["transcript"]]
    assert speakers == [("agent", 1), ("caller", None), ("agent", 2)]
    assert "Opus Bank" in detail["transcript"][0]["text"]
    assert detail["transcript"][1]["text"] == "I lost my card"
    assert "last four digits" in detail["transcript"][2]["text"]
    assert len(detail["latencies_s"]) == 2
    assert detail["slots"] == {}


async def test_a_call_not_in_progress_is_a_404_pointing_to_the_records() -> None:
    async with served() as (_, _base, http):
        error = error_of(await http.get("/live/calls/gone-1"), 404)

    assert "/calls/gone-1" in error["message"]


async def test_calls_in_progress_need_the_api_key_when_one_is_set() -> None:
    async with served(api_key=API_KEY) as (_, _base, http):
        refused = [await http.get(path) for path in ("/live/calls", "/live/calls/c1")]
        wrong = await http.get("/live/calls", headers={"X-API-Key": "not-it"})
        allowed = await http.get("/live/calls", headers=KEY)

    for response in [*refused, wrong]:
        assert error_of(response, 401)["message"] == "Missing or invalid X-API-Key header."
    assert allowed.json() == {"calls": []}
