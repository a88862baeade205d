"""`opusagent loadtest` end to end: the bench server in its own process (real Silero VAD, instant
fake stages), real speech from espeak-ng, the server sampled by pid."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from typer.testing import CliRunner

from opusagent.cli import app as cli
from opusagent.loadtest.bench_server import BenchOptions, bench_server_process, free_port
from opusagent.voice.offline import write_wav

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]


@pytest.mark.slow
def test_the_command_measures_a_bench_server(speak: Speak, tmp_path: Path) -> None:
    samples, rate = speak("I would like to check my balance please")
    wav = tmp_path / "caller.wav"
    write_wav(wav, samples, rate)
    out = tmp_path / "results"

    with bench_server_process(BenchOptions(), port=free_port()) as server:
        result = CliRunner().invoke(
            cli,
            [
                "loadtest",
                "--url", server.url,
                "--calls", "2",
                "--ramp", "0.5",
                "--duration", "4",
                "--turns", "1",
                "--wav", str(wav),
                "--out", str(out),
                "--server-pid", str(server.pid),
            ],
        )  # fmt: skip

    assert result.exit_code == 0, result.output
    summary = json.loads((out / "loadtest.json").read_text())
    assert summary["calls"]["success_rate"] == 1.0
    assert summary["turns"] == {"count": 2, "answered": 2, "missed": 0, "early": 0}
    # 200 ms of silence, less the server placing the end of speech within the tool's last frame
    assert all(180 < ms < 1000 for ms in summary["latencies_ms"])
    assert summary["server"]["pid"] == server.pid and summary["server"]["cpu_s"] > 0
    png = (out / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (800, 450)
    assert "turn latency p50 / p95 / p99 (ms)" in result.output
