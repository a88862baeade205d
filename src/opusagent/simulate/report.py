"""Reports: for each run a JSON file and one self-contained HTML page (criteria, the FSA path
drawn on the agent's graph, the transcript with timings, a per-turn latency plot, the
recording), and a summary of every run with the pass rate of each scenario."""

from __future__ import annotations

import base64
import html
import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from opusagent.agent.fsa.graph import GraphError, dot
from opusagent.agent.fsa.spec import AgentSpec
from opusagent.simulate.lines import Event
from opusagent.simulate.record import CalleeRecord
from opusagent.simulate.runner import RunResult

PATH_COLOUR = "#1f6feb"
VISITED_FILL = "#dbeafe"
_EDGE = re.compile(r'^(\s*)"([^"]+)" -> "([^"]+)" \[label=')
STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#1f2328}
table{border-collapse:collapse;margin:1em 0;width:100%}
td,th{border:1px solid #d0d7de;padding:.3em .5em;text-align:left;vertical-align:top}
th{background:#f6f8fa}.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}
.muted{color:#656d76}.agent{background:#f6f8fa}figure{margin:1em 0;overflow-x:auto}
"""
_VERDICT_SHOWN = {"error": "ERROR", "skipped": "skipped"}
"""A verdict that could not be judged, as the criteria table shows it."""


def run_json(result: RunResult, out: Path) -> dict[str, Any]:
    """A run as plain JSON."""
    plan = result.plan
    return {
        "scenario": plan.scenario.name,
        "scenario_file": str(plan.scenario.path),
        "persona": plan.persona.name,
        "mode": plan.mode,
        "bridge": plan.bridge if plan.mode == "audio" else None,
        "run": plan.number,
        "status": result.status,
        "call_id": result.call_id,
        "duration_s": round(result.duration_s, 3),
        "error": result.error,
        "verdicts": [asdict(v) for v in result.verdicts],
        "events": [asdict(e) for e in result.events],
        "caller_path": result.caller_path,
        "caller": result.caller,
        "caller_record": (
            result.caller_record.model_dump(mode="json") if result.caller_record else None
        ),
        "recording": _relative(result.recording, out),
        "callee": result.record.model_dump(mode="json") if result.record is not None else None,
    }


def summary_json(results: Sequence[RunResult]) -> dict[str, Any]:
    """Pass rates per scenario, and over every run judged."""
    scenarios: dict[str, dict[str, Any]] = {}
    for result in results:
        entry = scenarios.setdefault(
            result.plan.scenario.name,
            {"runs": 0, "passed": 0, "failed": 0, "errors": 0, "interrupted": 0, "skipped": 0},
        )
        entry["runs"] += 1
        key = {"error": "errors"}.get(result.status, result.status)
        entry[key] += 1
    for entry in scenarios.values():
        judged = entry["runs"] - entry["skipped"]
        entry["pass_rate"] = round(entry["passed"] / judged, 3) if judged else None
    judged = [r for r in results if r.status != "skipped"]
    passed = sum(r.status == "passed" for r in judged)
    return {
        "runs": len(results),
        "judged": len(judged),
        "passed": passed,
        "pass_rate": round(passed / len(judged), 3) if judged else None,
        "scenarios": scenarios,
    }


def write_reports(results: Sequence[RunResult], spec: AgentSpec, out: Path) -> Path:
    """Write every run's JSON and HTML, and the summary (`index.html`, `summary.json`);
    returns the summary page."""
    out.mkdir(parents=True, exist_ok=True)
    graph = _graph_or_none(spec)
    for result in results:
        stem = out / result.plan.label
        stem.with_suffix(".json").write_text(json.dumps(run_json(result, out), indent=2))
        stem.with_suffix(".html").write_text(run_html(result, spec, out, graph=graph))
    summary = summary_json(results)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    index = out / "index.html"
    index.write_text(summary_html(results, summary, spec))
    return index


# --- one run ---------------------------------------------------------------------------------


def run_html(result: RunResult, spec: AgentSpec, out: Path, *, graph: bool = True) -> str:
    plan = result.plan
    where = f"audio over {plan.bridge}" if plan.mode == "audio" else "text (web chat)"
    title = f"{plan.scenario.name} #{plan.number}: {result.status}"
    parts = [
        f"<h1>{_e(title)}</h1>",
        f"<p>Agent <b>{_e(spec.name)}</b>, persona <b>{_e(plan.persona.name)}</b>, {where}; "
        f"call <code>{_e(result.call_id or '-')}</code>, {result.duration_s:.1f} s.</p>",
    ]
    goal = plan.scenario.scenario.goal
    if goal:
        parts.append(f"<p>Goal: {_e(goal)}</p>")
    if result.caller:
        parts.append(f"<p>Caller: {_e(result.caller)}</p>")
    if result.error:
        parts.append(f'<p class="fail">{_e(result.error)}</p>')
    parts += ['<h2 id="criteria">Criteria</h2>', _criteria(result)]
    path = result.record.states_reached() if result.record is not None else []
    parts += ['<h2 id="path">Path</h2>', f"<p>{_e(' → '.join(path) or '(none)')}</p>"]
    if graph:
        parts.append(f"<figure>{path_svg(spec, path)}</figure>")
    if result.caller_path:
        parts.append(f"<p class=muted>Caller FSA path: {_e(' → '.join(result.caller_path))}</p>")
    if result.caller_record is not None:
        parts += [
            '<h2 id="caller-audit">The calling agent\'s decisions</h2>',
            _audit(result.caller_record),
        ]
    parts += ['<h2 id="latency">Latency per turn</h2>', latency_svg(result.events)]
    parts += ['<h2 id="transcript">Transcript</h2>', _transcript(result.events)]
    if result.record is not None:
        parts += ['<h2 id="audit">The agent\'s decisions</h2>', _audit(result.record)]
    recording = _recording(result, out)
    if recording:
        parts += ['<h2 id="recording">Recording</h2>', recording]
    return _page(title, "\n".join(parts))


def _criteria(result: RunResult) -> str:
    if not result.verdicts:
        return "<p class=muted>Not judged.</p>"
    rows = [
        f'<tr><td>{_e(v.criterion)}</td><td class="{"pass" if v.passed else "fail"}">'
        f"{_VERDICT_SHOWN.get(v.unjudged or '', 'pass' if v.passed else 'FAIL')}</td>"
        f"<td>{_e(v.explanation)}</td><td>{'' if v.turn is None else v.turn}</td>"
        f"<td>{_e(v.judge)}</td></tr>"
        for v in result.verdicts
    ]
    head = "<tr><th>Criterion</th><th>Result</th><th>Why</th><th>Turn</th><th>Judge</th></tr>"
    return f"<table>{head}{''.join(rows)}</table>"


def _transcript(events: Sequence[Event]) -> str:
    if not events:
        return "<p class=muted>Nothing was said.</p>"
    rows = []
    for event in sorted(events, key=lambda e: e.at_s):
        latency = "" if event.latency_s is None else f"{event.latency_s * 1000:.0f} ms"
        text = event.text if event.kind in ("speech", "keys", "error", "backchannel") else ""
        shown = f"[keys {text}]" if event.kind == "keys" else text
        rows.append(
            f'<tr class="{event.who}"><td>{event.at_s:.2f} to {event.end_s:.2f}</td>'
            f"<td>{event.who}</td><td>{_e(event.kind)}</td><td>{_e(shown)}</td>"
            f"<td>{latency}</td><td class=muted>{_e(event.note)}</td></tr>"
        )
    head = (
        "<tr><th>Time (s)</th><th>Who</th><th>What</th><th>Words (the agent's: as the caller "
        "heard them)</th><th>Latency</th><th>Note</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _audit(record: CalleeRecord) -> str:
    rows = []
    for entry in record.audit:
        said = entry.text or (f"[keys {entry.dtmf}]" if entry.dtmf else f"({entry.kind})")
        intent = f"{entry.intent} {entry.intent_score or 0:.2f}" if entry.intent else ""
        slots = ", ".join(f"{k}: {v}" for k, v in entry.slot_results.items())
        tools = ", ".join(
            c.name + (f" failed: {c.error}" if c.error else "") for c in entry.tool_calls
        )
        rows.append(
            f"<tr><td>{entry.turn}</td><td>{_e(entry.state_before)}</td><td>{_e(said)}</td>"
            f"<td>{_e(intent)}</td><td>{_e(slots)}</td><td>{_e(entry.decision)}</td>"
            f"<td>{_e(tools)}</td><td>{_e(entry.said)}</td></tr>"
        )
    head = (
        "<tr><th>Turn</th><th>State</th><th>Input</th><th>Intent</th><th>Slots</th>"
        "<th>Decision</th><th>Tools</th><th>Said</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _recording(result: RunResult, out: Path) -> str:
    parts = []
    if result.recording is not None and result.recording.is_file():
        data = base64.b64encode(result.recording.read_bytes()).decode()
        parts.append(
            f"<p>The call as the caller lived it (caller left, agent right): "
            f'<a href="{_e(_relative(result.recording, out) or "")}">WAV</a></p>'
            f'<audio controls src="data:audio/wav;base64,{data}"></audio>'
        )
    record = result.record
    if record is not None and record.recording_path:
        parts.append(
            f"<p>The server's recording: <code>{_e(record.recording_path)}</code> "
            f"(<code>GET /calls/{_e(record.call_id)}/recording</code>)</p>"
        )
    return "\n".join(parts)


# --- drawings --------------------------------------------------------------------------------


def path_svg(spec: AgentSpec, path: Sequence[str]) -> str:
    """The agent's graph (Graphviz) with the states of `path` filled and numbered in the order
    they were entered, and the transitions taken drawn thick."""
    steps = set(itertools.pairwise(path))
    direct = {(source, target) for source, target in steps if source in spec.states}
    lines = dot(spec).splitlines()
    drawn: set[tuple[str, str]] = set()
    for line in lines:
        match = _EDGE.match(line)
        if match is not None and (match.group(2), match.group(3)) in direct:
            drawn.add((match.group(2), match.group(3)))
    for i, line in enumerate(lines):
        match = _EDGE.match(line)
        if match is None:
            continue
        source, target = match.group(2), match.group(3)
        via_any = source == "*" and any(t == target and (s, t) not in drawn for s, t in steps)
        if (source, target) in drawn or via_any:
            lines[i] = line.replace(
                "[label=",
                f'[color="{PATH_COLOUR}", penwidth=2.5, fontcolor="{PATH_COLOUR}", label=',
            )
    order: dict[str, list[str]] = {}
    for number, state in enumerate(path, 1):
        order.setdefault(state, []).append(str(number))
    marks = [
        f'    "{state}" [style="rounded,filled", fillcolor="{VISITED_FILL}", '
        f'color="{PATH_COLOUR}", penwidth=2, xlabel="{",".join(numbers)}"];'
        for state, numbers in order.items()
    ]
    source = "\n".join([*lines[:-1], *marks, lines[-1]]) + "\n"
    return _svg(source)


def _svg(source: str) -> str:
    program = shutil.which("dot")
    if program is None:
        raise GraphError("drawing the path needs Graphviz's `dot` (apt-get install graphviz)")
    done = subprocess.run(
        [program, "-Tsvg"], input=source, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise GraphError(f"dot failed: {done.stderr.strip()}")
    return done.stdout[done.stdout.find("<svg") :]


def _graph_or_none(spec: AgentSpec) -> bool:
    """Whether the graph can be drawn here."""
    return shutil.which("dot") is not None and bool(spec.states)


def latency_svg(events: Sequence[Event], width: int = 640, height: int = 200) -> str:
    """A bar per agent turn: from the end of the caller's input to the agent's first word."""
    turns = [e for e in sorted(events, key=lambda e: e.at_s) if e.latency_s is not None]
    if not turns:
        return "<p class=muted>No turn had a measured latency.</p>"
    top = max(0.5, max(e.latency_s or 0.0 for e in turns) * 1.15)
    left, bottom, plot_h = 50, 30, height - 50
    step = (width - left - 10) / len(turns)
    bars = []
    for i, event in enumerate(turns):
        value = event.latency_s or 0.0
        h = plot_h * value / top
        x = left + i * step + step * 0.15
        y = 10 + plot_h - h
        bars.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'fill="{PATH_COLOUR}"><title>turn {i + 1} at {event.at_s:.1f} s: '
            f"{value * 1000:.0f} ms</title></rect>"
            f'<text x="{x + step * 0.35:.1f}" y="{height - bottom + 15}" font-size="11" '
            f'text-anchor="middle">{i + 1}</text>'
            f'<text x="{x + step * 0.35:.1f}" y="{y - 3:.1f}" font-size="10" '
            f'text-anchor="middle">{value * 1000:.0f}</text>'
        )
    axis = (
        f'<line x1="{left}" y1="10" x2="{left}" y2="{10 + plot_h}" stroke="#656d76"/>'
        f'<line x1="{left}" y1="{10 + plot_h}" x2="{width - 10}" y2="{10 + plot_h}" '
        f'stroke="#656d76"/>'
        f'<text x="{left - 5}" y="15" font-size="11" text-anchor="end">{top * 1000:.0f}</text>'
        f'<text x="{left - 5}" y="{10 + plot_h}" font-size="11" text-anchor="end">0</text>'
        f'<text x="12" y="{10 + plot_h / 2}" font-size="11" '
        f'transform="rotate(-90 12 {10 + plot_h / 2})" text-anchor="middle">ms</text>'
    )
    return (
        f'<svg class="latency" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height}" role="img" aria-label="latency per turn">{axis}{"".join(bars)}</svg>'
    )


# --- the summary -----------------------------------------------------------------------------


def summary_html(results: Sequence[RunResult], summary: dict[str, Any], spec: AgentSpec) -> str:
    rate = summary["pass_rate"]
    parts = [
        f"<h1>Simulated calls to {_e(spec.name)}</h1>",
        f"<p>{summary['passed']} of {summary['judged']} judged runs passed"
        f"{'' if rate is None else f' ({rate:.0%})'}; {summary['runs']} runs in all.</p>",
    ]
    rows = []
    for name, entry in summary["scenarios"].items():
        pass_rate = "" if entry["pass_rate"] is None else f"{entry['pass_rate']:.0%}"
        rows.append(
            f"<tr><td>{_e(name)}</td><td>{entry['runs']}</td><td>{entry['passed']}</td>"
            f"<td>{entry['failed']}</td><td>{entry['errors']}</td><td>{entry['skipped']}</td>"
            f"<td>{pass_rate}</td></tr>"
        )
    parts.append(
        "<table><tr><th>Scenario</th><th>Runs</th><th>Passed</th><th>Failed</th><th>Errors</th>"
        f"<th>Skipped</th><th>Pass rate</th></tr>{''.join(rows)}</table>"
    )
    runs = []
    for result in results:
        failed = [v.explanation for v in result.verdicts if not v.passed]
        why = failed[0] if failed else result.error
        runs.append(
            f'<tr><td><a href="{_e(result.plan.label)}.html">{_e(result.plan.label)}</a></td>'
            f'<td class="{"pass" if result.passed else "fail"}">{result.status}</td>'
            f"<td>{result.duration_s:.1f}</td><td>{_e(why)}</td></tr>"
        )
    parts.append(
        "<table><tr><th>Run</th><th>Status</th><th>Seconds</th><th>First problem</th></tr>"
        f"{''.join(runs)}</table>"
    )
    return _page(f"Simulated calls to {spec.name}", "\n".join(parts))


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _relative(path: Path | None, out: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.resolve().relative_to(out.resolve()))
    except ValueError:
        return str(path)
