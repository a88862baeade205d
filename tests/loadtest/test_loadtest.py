"""The load tool against a served app on loopback: the bench server's app with instant fake
stages and the energy VAD, driven by real dialler calls over real sockets."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from bridges.loopback import serving
from opusagent.bridges.dial import dial
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.cli import app as cli
from opusagent.loadtest.bench_server import BenchOptions, bench_app
from opusagent.loadtest.meter import AudioMeter
from opusagent.loadtest.plan import MAX_CALLS, LoadPlan, LoadPlanError, loopback_url
from opusagent.loadtest.report import summarize, write_histogram
from opusagent.loadtest.runner import LoadRun
from opusagent.loadtest.speech import trim
from opusagent.testing import FakeVAD
from opusagent.voice.offline import write_wav

RATE = 16000
SILENCE_S = 0.2
"""The bench server's end-of-turn silence (its default)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def loud(seconds: float) -> np.ndarray:
    """Noise the fake energy VAD takes for speech."""
    rng = np.random.default_rng(5)
    return rng.integers(-8000, 8000, round(seconds * RATE)).astype(np.int16)


def plan(url: str, **fields: Any) -> LoadPlan:
    defaults: dict[str, Any] = {
        "bridge": "twilio",
        "url": f"{url}/twilio/media",
        "calls": 3,
        "ramp_s": 0.2,
        "duration_s": 4.0,
        "turns": 2,
        "speech": loud(0.4),
        "rate": RATE,
        "quiet_s": 0.3,
    }
    return LoadPlan(**{**defaults, **fields})


async def load(reply_delay_s: float = 0.0, **fields: Any) -> dict[str, Any]:
    app = bench_app(BenchOptions(reply_delay_s=reply_delay_s), vad=FakeVAD())
    async with serving(app) as url:
        result = await LoadRun(plan(url, **fields), server_pid=os.getpid()).run()
    return summarize(result)


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    """One load test of three calls, each saying its line twice."""
    return asyncio.run(load())


def test_every_call_succeeds(summary: dict[str, Any]) -> None:
    calls = summary["calls"]

    assert (calls["placed"], calls["connected"], calls["succeeded"]) == (3, 3, 3)
    assert (calls["dropped"], calls["errors"], calls["success_rate"]) == (0, 0, 1.0)


def test_every_turn_is_answered_with_a_positive_latency(summary: dict[str, Any]) -> None:
    turns = summary["turns"]
    latencies = summary["latencies_ms"]

    assert turns["count"] == 3 * 2
    assert turns["answered"] == turns["count"] and turns["missed"] == 0
    assert len(latencies) == turns["count"]
    assert all(SILENCE_S * 1000 - 20 < ms < 1000 for ms in latencies)
    latency = summary["latency_ms"]
    assert latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]


def test_agent_audio_arrives_frame_by_frame(summary: dict[str, Any]) -> None:
    out = summary["outbound"]

    assert summary["frame_ms"] == 20
    assert out["frames"] > 0 and out["gap_ms"]["count"] > 0
    assert 15 < out["gap_ms"]["p50"] < 25
    assert out["jitter_ms"] is not None and out["jitter_ms"] >= 0


def test_the_server_process_is_sampled(summary: dict[str, Any]) -> None:
    server = summary["server"]

    assert server["pid"] == os.getpid()
    assert server["cpu_s"] > 0 and server["cpu_s_per_call_minute"] > 0
    assert server["rss_baseline_mb"] > 0 and server["peak_calls"] == 3
    assert summary["calls"]["call_minutes"] > 3 * 2 / 60


def test_the_summary_is_json(summary: dict[str, Any]) -> None:
    assert json.loads(json.dumps(summary)) == summary


def test_the_histogram_is_a_png(summary: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "latency.png"

    write_histogram(summary, path)

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert (width, height) == (800, 450)


async def test_latency_is_the_silence_plus_the_agents_delay() -> None:
    """An agent answering 300 ms after the 200 ms end-of-turn silence: about 500 ms measured
    from the caller's last voiced frame (VAD windows are 20 ms)."""
    summary = await load(reply_delay_s=0.3, calls=1, turns=2)

    latencies = summary["latencies_ms"]
    assert len(latencies) == 2
    assert all(480 <= ms <= 600 for ms in latencies), latencies


async def test_an_answer_to_half_an_utterance_is_no_latency() -> None:
    """A 400 ms pause inside the utterance ends the turn there (200 ms silence): the agent
    answers while the caller is still speaking, and that turn has no latency."""
    pause = np.zeros(round(0.4 * RATE), np.int16)
    halves = np.concatenate([loud(0.3), pause, loud(0.3)])

    summary = await load(calls=1, turns=1, speech=halves)

    assert summary["turns"]["early"] == 1
    assert summary["latencies_ms"] == []


async def test_a_dial_without_recording_keeps_turns_and_counts_only() -> None:
    app = bench_app(BenchOptions(), vad=FakeVAD())
    async with serving(app) as url:
        async with dial(TwilioMediaFarEnd(), f"{url}/twilio/media", record=False) as call:
            await call.wait_until_quiet(0.3, timeout=5)
            await call.play(loud(0.4), RATE)
            await call.wait_until_quiet(0.3, timeout=5)
        result = call.result()

    assert len(result.agent_audio) == 0 and len(result.caller_audio) == 0
    assert call.received == [] and result.received_count > 0
    assert [turn.agent_start is not None for turn in result.turns] == [True]


def test_a_non_loopback_url_is_refused() -> None:
    with pytest.raises(LoadPlanError, match=r"'10\.1\.2\.3' is not a loopback address"):
        loopback_url("ws://10.1.2.3:8080/twilio/media", "twilio")


def test_loopback_urls_are_accepted_with_the_bridges_path() -> None:
    assert loopback_url("ws://127.0.0.1:8080", "twilio") == "ws://127.0.0.1:8080/twilio/media"
    assert loopback_url("ws://localhost:8080/", "acs") == "ws://localhost:8080/acs"
    assert loopback_url("ws://[::1]:9/custom", "browser") == "ws://[::1]:9/custom"


def test_too_many_calls_are_refused() -> None:
    with pytest.raises(LoadPlanError, match=f"--calls must be between 1 and {MAX_CALLS}"):
        plan("ws://127.0.0.1:1", calls=MAX_CALLS + 1)


def test_the_command_refuses_another_host(tmp_path: Path) -> None:
    wav = tmp_path / "caller.wav"
    write_wav(wav, loud(0.5), RATE)

    result = CliRunner().invoke(
        cli, ["loadtest", "--url", "ws://example.com/twilio/media", "--wav", str(wav)]
    )

    assert result.exit_code == 1
    assert "'example.com' is not a loopback address" in result.output


def test_the_command_refuses_an_overlong_duration(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["loadtest", "--url", "ws://127.0.0.1:9", "--say", "hi", "--duration", "99999"]
    )

    assert result.exit_code == 1
    assert "--duration must be more than 0 and at most 3600 s" in result.output


def test_trim_keeps_only_the_voiced_part() -> None:
    voiced = loud(0.3)
    padded = np.concatenate([np.zeros(RATE // 2, np.int16), voiced, np.zeros(RATE, np.int16)])

    trimmed = trim(padded, RATE)

    assert abs(len(trimmed) - len(voiced)) <= RATE // 100


def test_the_meter_counts_gaps_within_a_reply_and_underruns() -> None:
    now = [0.0]
    meter = AudioMeter(lambda: now[0])
    for at in (0.0, 0.0, 0.02, 0.09):  # the last frame comes 30 ms after the audio ran out
        now[0] = at
        meter.frame(0.02)
    meter.reply_begins()
    now[0] = 5.0
    meter.frame(0.02)

    assert meter.frames == 5
    assert [round(g, 3) for g in meter.gaps] == [0.0, 0.02, 0.07]
    assert meter.underruns == 1
