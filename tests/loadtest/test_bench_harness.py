"""The load benchmarks' pieces: `bench/compare_pipecat.py`'s side for our server, run for real at
one call, the capacity rule, the load tool's caller script, and `bench/pipecat_server.py`
refusing to run outside the bench venv."""

from __future__ import annotations

import argparse
import importlib
import py_compile
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from opusagent.loadtest.plan import LoadPlan, LoadPlanError
from opusagent.loadtest.speech import trim

BENCH = Path(__file__).resolve().parents[2] / "bench"
SILENCE_MS = 200
Speak = Callable[[str], tuple[Any, int]]


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """`bench/compare_pipecat.py`, imported as its script would run (bench/ on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("compare_pipecat")


def summary(p95: float | None, *, succeeded: int = 1, missed: int = 0) -> dict[str, Any]:
    """The parts of a load test summary the capacity rule reads."""
    return {
        "calls": {"success_rate": succeeded},
        "turns": {"missed": missed, "early": 0},
        "latency_ms": {"p95": p95},
    }


@pytest.mark.slow
async def test_our_side_of_the_comparison_answers_every_turn_of_one_call(
    bench: ModuleType, speak: Speak
) -> None:
    samples, rate = speak("I would like to check my balance please")
    args = argparse.Namespace(silence_ms=SILENCE_MS, ramp=None, duration=4.0)

    result = await bench.measure(bench.ours(1), 1, args, (trim(samples, rate), rate))

    assert result["calls"]["succeeded"] == 1
    assert result["turns"]["answered"] == result["turns"]["count"] >= 1
    # The server places the end of speech by level, to 5 ms; the load tool by 20 ms frame.
    assert result["latency_ms"]["p50"] >= SILENCE_MS - 20
    assert result["server"]["rss_per_call_mb"] is not None
    table = bench.count_table(1, {"ours": result, "Pipecat": result}, SILENCE_MS, "Pipecat")
    printed = Console(width=200, record=True)
    printed.print(table)
    assert "ours / Pipecat" in printed.export_text()


def test_capacity_is_the_most_calls_within_100_ms_of_one_call_without_failure(
    bench: ModuleType,
) -> None:
    rows = {
        1: summary(260.0),
        50: summary(350.0),
        200: summary(361.0),
        500: summary(300.0, succeeded=0),
    }

    assert bench.capacity(rows) == 50


def test_a_missed_turn_rules_a_call_count_out_of_capacity(bench: ModuleType) -> None:
    rows = {1: summary(260.0), 50: summary(270.0, missed=1)}

    assert bench.capacity(rows) == 1


def test_the_ratio_is_ours_over_theirs_and_blank_without_both(bench: ModuleType) -> None:
    assert (bench.ratio(1.0, 4.0), bench.ratio(None, 4.0), bench.ratio(1.0, 0.0)) == (
        "0.25",
        "-",
        "-",
    )


def test_a_caller_script_says_each_utterance_in_turn_then_starts_again() -> None:
    first, second, third = (np.full(n, 1000, np.int16) for n in (10, 20, 30))
    plan = LoadPlan(
        bridge="twilio",
        url="ws://127.0.0.1:9/twilio/media",
        calls=1,
        ramp_s=0.0,
        duration_s=1.0,
        speech=first,
        then=(second, third),
        rate=8000,
    )

    assert [len(plan.utterance(turn)) for turn in range(4)] == [10, 20, 30, 10]


def test_an_empty_utterance_in_a_caller_script_is_refused() -> None:
    with pytest.raises(LoadPlanError, match="empty"):
        LoadPlan(
            bridge="twilio",
            url="ws://127.0.0.1:9/twilio/media",
            calls=1,
            ramp_s=0.0,
            duration_s=1.0,
            speech=np.full(10, 1000, np.int16),
            then=(np.zeros(0, np.int16),),
            rate=8000,
        )


def test_the_pipecat_server_compiles_with_our_python(tmp_path: Path) -> None:
    py_compile.compile(
        str(BENCH / "pipecat_server.py"), cfile=str(tmp_path / "out.pyc"), doraise=True
    )


def test_the_pipecat_server_outside_the_bench_venv_says_how_to_build_it() -> None:
    ran = subprocess.run(
        [sys.executable, str(BENCH / "pipecat_server.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert ran.returncode == 1
    assert "scripts/bench-pipecat-env" in ran.stderr
    assert "Traceback" not in ran.stderr
