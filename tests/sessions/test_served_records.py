"""A served call leaves its record: what was said and heard, the path, the audit, the figures."""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import httpx
import numpy as np
from typer.testing import CliRunner

from bridges.loopback import serving, until
from opusagent.bridges.dial import dial
from opusagent.bridges.farends import BrowserFarEnd
from opusagent.cli import app as cli
from opusagent.config import Settings
from opusagent.testing import Utterance

from .test_resume import POLICY, heard, served_app


async def test_a_finished_call_is_recorded_and_served(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/calls.db"
    settings = Settings(turn=POLICY, database_url=database, recordings_dir=tmp_path / "rec")
    app = served_app(settings, [Utterance(0.2, 0.7, "I lost my card")])
    await app.state.records.open()
    far_end = BrowserFarEnd(16000, call_id="rec-1", params={"From": "+15550001"})
    async with serving(app) as url:
        async with dial(far_end, f"{url}/browser") as call:
            await call.wait_until_quiet(0.3, timeout=10)
            await call.silence(0.2)
            speech = np.random.default_rng(3).integers(-8000, 8000, 8000).astype(np.int16)
            await call.play(speech, 16000)
            await until(lambda: "identify" in heard(call, "state"), within=5)
            await call.dtmf("4217#")
            await until(lambda: "verify" in heard(call, "state"), within=5)
        http = url.replace("ws://", "http://")
        async with httpx.AsyncClient(base_url=http) as client:
            for _ in range(100):
                response = await client.get("/calls/rec-1")
                if response.status_code == 200:
                    break
                await call.wait_ended()
            listed = await client.get("/calls", params={"state": "verify"})
            recording = await client.get("/calls/rec-1/recording")

    record = response.json()
    assert (record["agent"], record["bridge"], record["caller"]) == (
        "bank_card",
        "browser",
        "+15550001",
    )
    assert (record["outcome"], record["final_state"]) == ("abandoned", "verify")
    assert record["path"] == ["welcome", "identify", "lookup_account", "verify"]
    said = [(line["speaker"], line["text"] or line["dtmf"]) for line in record["transcript"]]
    assert ("caller", "I lost my card") in said
    assert ("caller", "4217") in said
    assert any(c["name"] == "find_account" for c in record["tool_calls"])
    assert [c["call_id"] for c in listed.json()["calls"]] == ["rec-1"]
    assert recording.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(recording.content)) as wav:
        assert (wav.getnchannels(), wav.getframerate()) == (2, 16000)
        frames = np.frombuffer(wav.readframes(wav.getnframes()), np.int16).reshape(-1, 2)
    caller_peak, agent_peak = np.abs(frames).max(axis=0)
    assert caller_peak > 4000, "the caller's speech is on the left channel"
    assert agent_peak > 0, "the agent's speech is on the right channel"

    env = {"OPUSAGENT_DATABASE_URL": database}
    show = ["calls", "show", "rec-1"]
    shown = await asyncio.to_thread(CliRunner().invoke, cli, show, env=env)
    assert shown.exit_code == 0, shown.output
    assert "lookup_account" in shown.output
