"""The soak: many concurrent calls for a long time against the bench server; exits 1 unless every
call succeeded, the memory per call did not grow over the run, and no outbound gap exceeded the
limit.

The bench server (`opusagent.loadtest.bench_server`: the real app, Twilio Media Streams bridge,
`Call` and batched Silero VAD, with instant fake STT, agent and TTS) runs as its own process;
the load tool places `--calls` Twilio calls over the ramp, each saying an espeak-ng sentence
again and again for `--duration` seconds while the server's RSS is sampled every half second.

A leak shows as memory growing while the number of calls stays the same: the RSS samples taken
while every call is up are split in thirds by time, and the growth from the first third's median
to the last third's is divided by the calls and by the turns each call took in between. A call
keeps its transcript (a few hundred bytes a turn, by design); a leak of audio, which is 8 KB per
second of a reply even at 8 kHz mu-law, shows as kilobytes per turn: the growth must stay within
`--max-growth-kb-per-turn`.

    .venv/bin/python bench/soak.py                          # 200 calls for 10 minutes
    .venv/bin/python bench/soak.py --calls 50 --duration 120
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from pathlib import Path
from typing import Any

from harness import IDLE_S, QUIET_S, TWILIO_PATH, espeak_speech, machine_line, ramp_for, write_json
from opusagent.loadtest.bench_server import BenchOptions, bench_server_process, free_port
from opusagent.loadtest.plan import LoadPlan
from opusagent.loadtest.report import MB, summarize
from opusagent.loadtest.runner import LoadResult, LoadRun
from opusagent.loadtest.sampler import ServerSample

PROGRESS_EVERY_S = 30.0


def rss_growth(result: LoadResult, calls: int) -> dict[str, Any]:
    """RSS per call in the first and last thirds of the time every call was up, and the growth
    between them per call and per turn (None when too few samples were taken at full load)."""
    samples = result.server
    full = [s for s in samples if s.calls == calls]
    if len(full) < 3:
        return {"samples_at_full_load": len(full), "growth_kb_per_turn": None}
    start, end = full[0].at, full[-1].at
    third = (end - start) / 3
    first = [s for s in full if s.at <= start + third]
    last = [s for s in full if s.at >= end - third]
    between = (statistics.median(s.at for s in first), statistics.median(s.at for s in last))
    turns = sum(
        between[0] <= outcome.connected_at + turn.caller_end < between[1]
        for outcome in result.outcomes
        if outcome.connected_at is not None
        for turn in outcome.turns
    )
    growth = statistics.median(s.rss for s in last) - statistics.median(s.rss for s in first)
    baseline = samples[0].rss
    return {
        "samples_at_full_load": len(full),
        "full_load_s": round(end - start, 1),
        "rss_baseline_mb": round(baseline / MB, 2),
        "rss_per_call_first_third_kb": round(_per_call(first, baseline, calls), 2),
        "rss_per_call_last_third_kb": round(_per_call(last, baseline, calls), 2),
        "growth_kb_per_call": round(growth / calls / 1024, 2),
        "turns_per_call_between": round(turns / calls, 1),
        "growth_kb_per_turn": round(growth / max(turns, 1) / 1024, 3),
    }


def _per_call(samples: list[ServerSample], baseline: int, calls: int) -> float:
    return (statistics.median(s.rss for s in samples) - baseline) / calls / 1024


def verdicts(summary: dict[str, Any], leak: dict[str, Any], args: argparse.Namespace) -> list[str]:
    """What failed (empty: the soak passed)."""
    failures = []
    calls, turns = summary["calls"], summary["turns"]
    if calls["success_rate"] < 1.0 or turns["missed"]:
        failures.append(
            f"{calls['placed'] - calls['succeeded']} of {calls['placed']} calls failed "
            f"({calls['errors']} errors, {calls['dropped']} dropped, {turns['missed']} turns "
            "unanswered)"
        )
    gap = summary["outbound"]["gap_ms"]["max"]
    if gap is None or gap > args.max_gap_ms:
        failures.append(f"largest outbound gap {gap} ms, limit {args.max_gap_ms:g} ms")
    growth = leak["growth_kb_per_turn"]
    if growth is None:
        failures.append("too few memory samples with every call up: make the run longer")
    elif growth > args.max_growth_kb_per_turn:
        failures.append(
            f"memory grew {growth:g} KB per turn of each call over the run, limit "
            f"{args.max_growth_kb_per_turn:g} KB"
        )
    return failures


async def soak(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the load against a fresh bench server; its figures and the memory check's."""
    samples, rate = espeak_speech()
    with bench_server_process(BenchOptions(silence_ms=args.silence_ms), port=free_port()) as srv:
        plan = LoadPlan(
            bridge="twilio",
            url=f"{srv.url}{TWILIO_PATH}",
            calls=args.calls,
            ramp_s=ramp_for(args.calls, args.ramp),
            duration_s=args.duration,
            speech=samples,
            rate=rate,
            quiet_s=QUIET_S,
        )
        run = LoadRun(plan, server_pid=srv.pid, idle_s=IDLE_S)
        progress = asyncio.create_task(report_progress(run))
        try:
            result = await run.run()
        finally:
            progress.cancel()
    return summarize(result), rss_growth(result, args.calls)


async def report_progress(run: LoadRun) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        print(
            f"  {loop.time() - started:5.0f} s: {run.active} calls up, {run.turns} turns, "
            f"{run.failed} failed",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="concurrent calls")
    parser.add_argument("--duration", type=float, default=600.0, help="seconds each call lasts")
    parser.add_argument("--ramp", type=float, default=None, help="seconds to place the calls")
    parser.add_argument("--silence-ms", type=int, default=200, help="end-of-turn VAD silence")
    parser.add_argument("--max-gap-ms", type=float, default=60.0, help="largest outbound gap")
    parser.add_argument(
        "--max-growth-kb-per-turn",
        type=float,
        default=4.0,
        help="largest growth of RSS, per call and per turn it took, between the first and "
        "last thirds of the run",
    )
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    print(f"{machine_line()}; {args.calls} calls for {args.duration:g} s each", flush=True)
    summary, leak = asyncio.run(soak(args))
    calls, latency, gap = summary["calls"], summary["latency_ms"], summary["outbound"]["gap_ms"]
    print(
        f"calls: {calls['succeeded']}/{calls['placed']} succeeded; turns: "
        f"{summary['turns']['answered']}/{summary['turns']['count']} answered; latency p50/p95/"
        f"p99 {latency['p50']}/{latency['p95']}/{latency['p99']} ms; outbound gap p99/max "
        f"{gap['p99']}/{gap['max']} ms"
    )
    print(
        f"memory: baseline {leak.get('rss_baseline_mb')} MB; per call "
        f"{leak.get('rss_per_call_first_third_kb')} KB in the first third, "
        f"{leak.get('rss_per_call_last_third_kb')} KB in the last; growth "
        f"{leak.get('growth_kb_per_call')} KB per call, {leak['growth_kb_per_turn']} KB per turn "
        f"({leak.get('turns_per_call_between')} turns a call between the thirds, "
        f"{leak.get('full_load_s')} s at full load)"
    )
    failures = verdicts(summary, leak, args)
    if args.json is not None:
        write_json(args.json, {"summary": summary, "memory": leak, "failures": failures})
    for failure in failures:
        print(f"FAILED: {failure}")
    if failures:
        sys.exit(1)
    print("soak passed")


if __name__ == "__main__":
    main()
