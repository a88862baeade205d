"""The figures of a load test: turn latency percentiles, outbound gaps and jitter, success,
server CPU and memory per call; as JSON, a latency histogram (PNG) and a printed table."""

from __future__ import annotations

import importlib
import math
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table

from opusagent import __version__
from opusagent.loadtest.runner import LoadResult
from opusagent.loadtest.sampler import ServerSample

PERCENTILES = (50, 95, 99)
MB = 1024 * 1024
LAG_WARNING_MS = 20.0
"""When the load tool's own loop runs this late (p99), its timings include its own delay."""
MAX_ERRORS_LISTED = 20
WAIT_WARNING = 0.1
"""When the server's loop waits this share of the time for a CPU, the machine is too busy."""


def _stats_ms(seconds: list[float] | np.ndarray) -> dict[str, float | int | None]:
    """count, p50/p95/p99, mean, min and max in milliseconds (None when there is nothing)."""
    values = np.asarray(seconds, dtype=np.float64) * 1000
    if values.size == 0:
        empty = ("mean", "min", "max")
        return {"count": 0, **{f"p{p}": None for p in PERCENTILES}, **dict.fromkeys(empty)}
    figures: dict[str, float | int | None] = {"count": int(values.size)}
    for p, value in zip(PERCENTILES, np.percentile(values, PERCENTILES), strict=True):
        figures[f"p{p}"] = round(float(value), 2)
    figures["mean"] = round(float(values.mean()), 2)
    figures["min"] = round(float(values.min()), 2)
    figures["max"] = round(float(values.max()), 2)
    return figures


def summarize(result: LoadResult) -> dict[str, Any]:
    """Every figure of the test, ready for JSON."""
    plan = result.plan
    outcomes = result.outcomes
    latencies = [latency for o in outcomes for latency in o.latencies()]
    gaps = np.concatenate([np.frombuffer(o.meter.gaps, dtype=np.float64) for o in outcomes])
    call_minutes = sum(o.seconds for o in outcomes) / 60
    turns = sum(len(o.turns) for o in outcomes)
    missed = sum(o.missed_turns for o in outcomes)
    early = sum(len(o.early) for o in outcomes)
    errors = Counter(o.error for o in outcomes if o.error is not None)
    drops = Counter(o.end_reason for o in outcomes if o.error is None and o.dropped)
    return {
        "tool": f"opusagent loadtest {__version__}",
        "plan": {
            "bridge": plan.bridge,
            "url": plan.url,
            "calls": plan.calls,
            "ramp_s": plan.ramp_s,
            "duration_s": plan.duration_s,
            "turns_per_call": plan.turns,
            "speech_s": round(plan.speech_s, 3),
            "quiet_s": plan.quiet_s,
        },
        "wall_s": round(result.ended_at - result.started_at, 3),
        "calls": {
            "placed": len(outcomes),
            "connected": sum(o.connected_at is not None for o in outcomes),
            "succeeded": sum(o.succeeded for o in outcomes),
            "dropped": sum(o.error is None and o.dropped for o in outcomes),
            "errors": sum(o.error is not None for o in outcomes),
            "success_rate": sum(o.succeeded for o in outcomes) / len(outcomes),
            "call_minutes": round(call_minutes, 3),
        },
        "turns": {"count": turns, "answered": turns - missed, "missed": missed, "early": early},
        "latency_ms": _stats_ms(latencies),
        "outbound": {
            "frames": sum(o.meter.frames for o in outcomes),
            "gap_ms": _stats_ms(gaps),
            "jitter_ms": round(float(np.std(gaps)) * 1000, 2) if gaps.size else None,
            "underruns": sum(o.meter.underruns for o in outcomes),
        },
        "server": _server(result.server, result.server_pid, call_minutes, result.started_at),
        "load_tool": {
            "loop_lag_ms": _stats_ms(result.loop_lags),
            "cpu_s": round(result.client_cpu_s, 3),
        },
        "errors": [
            {"message": message, "calls": count}
            for message, count in errors.most_common(MAX_ERRORS_LISTED)
        ],
        "drops": [
            {"end_reason": reason, "calls": count}
            for reason, count in drops.most_common(MAX_ERRORS_LISTED)
        ],
        "latencies_ms": [round(x * 1000, 2) for x in latencies],
        "frame_ms": result.frame_ms,
    }


def _server(
    samples: list[ServerSample], pid: int | None, call_minutes: float, started_at: float
) -> dict[str, Any] | None:
    """CPU seconds per call-minute, and the memory the calls added (at the most calls). When
    the server was watched idle before the first call, also its idle CPU use and the CPU
    seconds per call-minute above it."""
    if pid is None or len(samples) < 2:
        return None
    idle = [s for s in samples if s.at <= started_at]
    samples = samples[len(idle) - 1 :] if idle else samples
    first, last = samples[0], samples[-1]
    cpu_s = last.cpu_s - first.cpu_s
    idle_cores = None
    if len(idle) >= 2 and idle[-1].at > idle[0].at:
        idle_cores = (idle[-1].cpu_s - idle[0].cpu_s) / (idle[-1].at - idle[0].at)
    peak_calls = max(s.calls for s in samples)
    at_peak = [s.rss for s in samples if s.calls == peak_calls]
    baseline = first.rss
    added = statistics.median(at_peak) - baseline if peak_calls else 0.0
    wall = last.at - first.at
    waited = None
    if first.waited_s is not None and last.waited_s is not None and wall > 0:
        waited = round((last.waited_s - first.waited_s) / wall, 3)
    above_idle = None
    if idle_cores is not None and call_minutes:
        above_idle = round((cpu_s - idle_cores * wall) / call_minutes, 4)
    return {
        "pid": pid,
        "cpu_s": round(cpu_s, 3),
        "cpu_s_per_call_minute": round(cpu_s / call_minutes, 4) if call_minutes else None,
        "cpu_cores_mean": round(cpu_s / wall, 3) if wall > 0 else None,
        "cpu_wait_share": waited,
        "idle_cores": None if idle_cores is None else round(idle_cores, 4),
        "cpu_s_per_call_minute_above_idle": above_idle,
        "rss_baseline_mb": round(baseline / MB, 2),
        "rss_peak_mb": round(max(s.rss for s in samples) / MB, 2),
        "peak_calls": peak_calls,
        "rss_per_call_mb": round(added / peak_calls / MB, 4) if peak_calls else None,
        "samples": len(samples),
    }


def write_histogram(summary: dict[str, Any], path: Path) -> None:
    """A PNG histogram of the turn latencies with p50/p95/p99 marked (matplotlib, Agg)."""
    matplotlib = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    pyplot = importlib.import_module("matplotlib.pyplot")
    latencies = summary["latencies_ms"]
    plan = summary["plan"]
    figure, axes = pyplot.subplots(figsize=(8, 4.5), dpi=100)
    if latencies:
        bins = max(10, min(100, math.ceil(math.sqrt(len(latencies)))))
        axes.hist(latencies, bins=bins, color="#4c72b0")
        for p, style in zip(PERCENTILES, (":", "--", "-"), strict=True):
            value = summary["latency_ms"][f"p{p}"]
            axes.axvline(value, color="#c44e52", linestyle=style, label=f"p{p} {value:.0f} ms")
        axes.legend()
    else:
        axes.text(0.5, 0.5, "no turn was answered", ha="center", va="center")
    axes.set_xlabel("caller's last voiced frame → first agent audio (ms)")
    axes.set_ylabel("turns")
    axes.set_title(
        f"{plan['calls']} calls over {plan['bridge']}: "
        f"{summary['turns']['answered']} turns answered of {summary['turns']['count']}"
    )
    figure.tight_layout()
    figure.savefig(path, format="png")
    pyplot.close(figure)


def _ms(value: object) -> str:
    return "-" if value is None else f"{value:.1f}"


def summary_table(summary: dict[str, Any]) -> Table:
    """The figures a person reads first."""
    table = Table(title="Load test", show_header=False)
    table.add_column("figure")
    table.add_column("value", justify="right")
    calls = summary["calls"]
    latency = summary["latency_ms"]
    out = summary["outbound"]
    table.add_row(
        "calls: succeeded / placed",
        f"{calls['succeeded']} / {calls['placed']} ({calls['success_rate']:.1%})",
    )
    table.add_row("calls dropped / with errors", f"{calls['dropped']} / {calls['errors']}")
    turns = summary["turns"]
    table.add_row("turns answered / spoken", f"{turns['answered']} / {turns['count']}")
    if turns["early"]:
        table.add_row("  of which answered before the caller finished", str(turns["early"]))
    table.add_row(
        "turn latency p50 / p95 / p99 (ms)",
        " / ".join(_ms(latency[f"p{p}"]) for p in PERCENTILES),
    )
    gap = out["gap_ms"]
    table.add_row(
        "outbound gap p50 / p99 / max (ms)",
        f"{_ms(gap['p50'])} / {_ms(gap['p99'])} / {_ms(gap['max'])}",
    )
    table.add_row("outbound jitter (ms, std dev of gaps)", _ms(out["jitter_ms"]))
    table.add_row("outbound underruns", str(out["underruns"]))
    server = summary["server"]
    if server is not None:
        table.add_row("server CPU-seconds per call-minute", f"{server['cpu_s_per_call_minute']}")
        if server["idle_cores"] is not None:
            table.add_row(
                "  above the idle server's (idle: cores)",
                f"{server['cpu_s_per_call_minute_above_idle']} ({server['idle_cores']:.3f})",
            )
        if server["cpu_wait_share"] is not None:
            table.add_row(
                "server loop waiting for a CPU (share of the time)",
                f"{server['cpu_wait_share']:.1%}",
            )
        table.add_row(
            "server RSS baseline / peak (MB)",
            f"{server['rss_baseline_mb']:.1f} / {server['rss_peak_mb']:.1f}",
        )
        per_call = server["rss_per_call_mb"]
        table.add_row(
            f"server RSS per call (MB, at {server['peak_calls']} calls)",
            "-" if per_call is None else f"{per_call:.3f}",
        )
    lag = summary["load_tool"]["loop_lag_ms"]
    table.add_row("load tool loop lag p99 / max (ms)", f"{_ms(lag['p99'])} / {_ms(lag['max'])}")
    return table


def warnings(summary: dict[str, Any]) -> list[str]:
    """What makes the figures doubtful."""
    notes = []
    server = summary["server"]
    if server is not None and (server["cpu_wait_share"] or 0.0) > WAIT_WARNING:
        notes.append(
            f"the server's event loop spent {server['cpu_wait_share']:.0%} of the time ready to "
            "run but waiting for a CPU: other processes on this machine slowed it down"
        )
    if summary["turns"]["early"]:
        notes.append(
            f"{summary['turns']['early']} turns were answered while the caller was still "
            "speaking (a pause in the utterance ended the turn); their latencies are left out. "
            "Use an utterance without long pauses"
        )
    lag = summary["load_tool"]["loop_lag_ms"]["p99"]
    if lag is not None and lag > LAG_WARNING_MS:
        notes.append(
            f"the load tool's own event loop ran {lag:.0f} ms late (p99): it is short of CPU, "
            "so latencies include its delay; use fewer calls or a less busy machine"
        )
    return notes
