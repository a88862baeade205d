"""The softphone and the dashboard in a real headless Chromium, against the real app and its
real offline speech stack on loopback.

Chromium's fake microphone plays a WAV we make with our own TTS: silence while the agent greets,
then "I lost my card.". The page streams it over `WS /browser`; the test watches the agent's
words, the caller's transcript and the state on the graph, keys the card's last digits on the
keypad, then finds the call on the dashboard (behind an API key). Screenshots of both pages are
kept in `build/test-artifacts/` (git-ignored) for a person to look at.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi import FastAPI
from playwright.async_api import BrowserContext, ConsoleMessage, Page, async_playwright, expect

from bridges.test_served_app import wait_ready
from bridges.twilio_api_fake import serving
from opusagent.app import create_app
from opusagent.config import BridgeSettings, Settings
from opusagent.voice.offline import resample, synthesize, write_wav

pytestmark = pytest.mark.slow

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
API_KEY = "softphone-test-key"
AGENT = "bank_card"
CAPTURE_RATE = 48000
AFTER_GREETING_S = 2.0
"""Silence past the greeting's length before the caller speaks (page start-up, pacing)."""
TRAILING_SILENCE_S = 60.0
"""Chromium loops the file: the caller must not speak again while the test runs."""
WAIT_MS = 30_000
SECONDS = re.compile(r"^\d+\.\d+ s$")


@pytest.fixture
def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        message = "chromium is not installed (make test installs it; or apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


async def caller_wav(app: FastAPI, folder: Path) -> Path:
    """The caller's side of the call, spoken by our TTS: quiet through the greeting, then
    "I lost my card.", then quiet (48 kHz, 16-bit mono PCM WAV)."""
    tts = app.state.voice.tts
    spec = app.state.agents.entry(AGENT).loaded.spec
    greeting = await synthesize(tts, f"{spec.greeting} {spec.states[spec.initial].say}")
    words = await synthesize(tts, "I lost my card.")
    speech = resample(words.samples, words.rate, CAPTURE_RATE)
    lead_s = len(greeting.samples) / greeting.rate + AFTER_GREETING_S
    quiet = np.zeros(round(lead_s * CAPTURE_RATE), np.int16)
    tail = np.zeros(round(TRAILING_SILENCE_S * CAPTURE_RATE), np.int16)
    path = folder / "caller.wav"
    write_wav(path, np.concatenate([quiet, speech, tail]), CAPTURE_RATE)
    return path


@asynccontextmanager
async def headless_chromium(
    executable: str, microphone: Path, profile: Path
) -> AsyncIterator[BrowserContext]:
    """Headless Chromium with the WAV `microphone` as its microphone and a fresh `profile`."""
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(profile),  # Chromium's --user-data-dir
            executable_path=executable,
            headless=True,
            args=[
                "--no-sandbox",
                "--headless",
                "--disable-gpu",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={microphone}",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-quic",
            ],
            viewport={"width": 1500, "height": 1000},
        )
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            await context.close()


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    """The real app: real agents, speech models, call records and recordings, with an API key."""
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path}/calls.db",
        recordings_dir=tmp_path / "recordings",
        bridges=BridgeSettings(api_key=API_KEY),
    )
    return create_app(settings)


def watch_console(page: Page, problems: list[str]) -> None:
    """Collect the page's script errors into `problems`: console errors and uncaught exceptions.

    Chromium also logs every HTTP error status as a console error; those are answers the pages
    expect and handle (a 401 before the key is given, a 404 for a call that just ended), and
    the test checks what the pages make of them.
    """

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            problems.append(message.text)

    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(str(error)))


async def test_a_call_from_the_softphone_walks_the_bank_agent_and_shows_on_the_dashboard(
    app: FastAPI, chromium: str, tmp_path: Path
) -> None:
    async with serving(app) as base:
        await wait_ready(app)
        wav = await caller_wav(app, tmp_path)
        async with headless_chromium(chromium, wav, tmp_path / "profile") as context:
            problems: list[str] = []
            phone = await context.new_page()
            watch_console(phone, problems)
            await phone.goto(f"{base}/?agent={AGENT}")
            await expect(phone.locator("#call")).to_be_enabled()
            await expect(phone.locator("#graph g.state")).not_to_have_count(0)
            await phone.click("#call")

            await expect(phone.locator("#status")).to_contain_text("In call")
            current = phone.locator("#graph g.state.current")
            await expect(current).to_have_attribute("data-state", "welcome")
            agent_lines = phone.locator("#transcript li.agent")
            await expect(agent_lines.first).to_contain_text("Opus Bank")
            await expect(phone.locator("#transcript li.caller .words")).to_have_text(
                ["i lost my card"], timeout=2 * WAIT_MS
            )
            await expect(current).to_have_attribute("data-state", "identify")
            await expect(agent_lines.nth(1)).to_contain_text("last four digits")
            await expect(phone.locator("#latencies li")).to_have_count(2)

            for key in "4217#":
                await phone.locator("#keypad button", has_text=key).click()
            await expect(current).to_have_attribute("data-state", "verify")
            await expect(phone.locator("#state")).to_have_text("verify")
            await expect(phone.locator("#slots")).to_contain_text("card_last4")
            await expect(phone.locator("#graph g.state.visited")).to_have_count(3)
            await expect(agent_lines.last).to_contain_text("date of birth")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await phone.screenshot(path=ARTIFACTS / "softphone.png")
            call_id = (await phone.locator("#status").inner_text()).split()[2]

            dashboard = await context.new_page()
            # Tall enough for a whole detail: a full-page screenshot of a taller page resizes
            # the view and loses the graph's scroll to the current state.
            await dashboard.set_viewport_size({"width": 1500, "height": 1250})
            watch_console(dashboard, problems)
            await dashboard.goto(f"{base}/dashboard")
            key_form = dashboard.locator("#key-form")
            await expect(key_form).to_be_visible()
            await key_form.locator("input[name=key]").fill(API_KEY)
            await key_form.locator("button").click()
            live_row = dashboard.locator("#live tbody tr")
            await expect(live_row).to_have_count(1)
            await expect(live_row.locator("td")).to_have_text(
                [call_id, "browser", AGENT, "verify", SECONDS, SECONDS]
            )
            await live_row.click()
            await expect(dashboard.locator("#detail-kind")).to_have_text("live")
            await expect(dashboard.locator("#detail-path")).to_have_text(
                "welcome → identify → verify"
            )
            await expect(dashboard.locator("#detail-transcript li.caller")).to_contain_text(
                ["i lost my card"]
            )
            await expect(dashboard.locator("#detail-graph g.state.current")).to_have_attribute(
                "data-state", "verify"
            )
            await dashboard.screenshot(path=ARTIFACTS / "dashboard.png")

            await phone.click("#hangup")
            await expect(phone.locator("#status")).to_contain_text("Call ended")
            await expect(live_row).to_have_count(0)
            await expect(dashboard.locator("#detail-kind")).to_have_text("abandoned")
            await expect(dashboard.locator("#detail-path")).to_have_text(
                "welcome → identify → lookup_account → verify"
            )
            audit = dashboard.locator("#detail-audit tbody tr")
            await expect(audit).to_have_count(4)
            await expect(audit.last).to_contain_text("caller hung up")
            await expect(dashboard.locator("#recording")).to_be_visible()
            await expect(dashboard.locator("#records tbody tr td").first).to_have_text(call_id)
            await dashboard.screenshot(path=ARTIFACTS / "dashboard-record.png")

    assert problems == [], problems
