"""`opusagent agent …`: lint, draw, chat with and export the schema of Finite State Agents."""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from opusagent.agent.fsa.catalog import build_controller
from opusagent.agent.fsa.controller import Controller, Outcome, TurnInput
from opusagent.agent.fsa.graph import GraphError, render_graph
from opusagent.agent.fsa.lint import lint
from opusagent.agent.fsa.loader import AgentFileError, LoadedAgent, load_agent
from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.fsa.state import AgentState
from opusagent.agent.llm.endpoint import LLM, llm_from_settings
from opusagent.agent.llm.phrasing import Phraser, phrased_speech
from opusagent.agent.tools.registry import ToolContext
from opusagent.call.events import AgentAction
from opusagent.call.stages import TurnKind
from opusagent.config import ConfigError, load_settings

agent_app = typer.Typer(
    help="Finite State Agents: check, draw and talk to agent files.", no_args_is_help=True
)
_out = Console(highlight=False)
_err = Console(stderr=True, highlight=False)

AgentFile = Annotated[Path, typer.Argument(help="The agent's YAML file.", show_default=False)]


@agent_app.command("lint")
def lint_command(file: AgentFile) -> None:
    """Check an agent file: graph, retries, names, types, tools, priorities and templates."""
    agent = _load(file)
    findings = lint(agent)
    for finding in findings:
        style = "red" if finding.severity == "error" else "yellow"
        _out.print(f"[{style}]{finding.format(str(file))}[/{style}]")
    errors = sum(f.severity == "error" for f in findings)
    warnings = len(findings) - errors
    if errors:
        _out.print(f"{file}: {errors} error(s), {warnings} warning(s)")
        raise typer.Exit(1)
    _out.print(f"{file}: ok ({len(agent.spec.states)} states, {warnings} warning(s))")


@agent_app.command("graph")
def graph_command(
    file: AgentFile,
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write: .mmd, .dot or .svg.")
    ],
) -> None:
    """Draw the agent's state graph (Mermaid, DOT, or SVG when Graphviz is installed)."""
    agent = _load(file)
    try:
        text = render_graph(agent.spec, output.suffix.lower())
    except GraphError as exc:
        _fail(str(exc))
    output.write_text(text, encoding="utf-8")
    _out.print(f"wrote {output}")


@agent_app.command("schema")
def schema_command(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
) -> None:
    """The JSON Schema of agent files (for editors)."""
    text = json.dumps(AgentSpec.model_json_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


@agent_app.command("chat")
def chat_command(
    file: AgentFile,
    today: Annotated[
        str | None, typer.Option(help="Resolve relative dates against this day (YYYY-MM-DD).")
    ] = None,
    audit_json: Annotated[
        Path | None, typer.Option(help="Write the conversation's audit log here as JSON.")
    ] = None,
) -> None:
    """Talk to the agent as text. Type what the caller says; `/dtmf 1234` keys digits,
    `/silence` is a no-input turn, `/quit` hangs up. With OPUSAGENT_LLM_BASE_URL set, the
    agent's LLM proposes and phrases as it would on a call."""
    agent = _load(file)
    day = datetime.date.fromisoformat(today) if today else None
    try:
        llm = llm_from_settings(load_settings())
    except ConfigError as exc:
        _fail(str(exc))
    controller = build_controller(agent, proposer=llm.proposer if llm else None, today=day)
    state = asyncio.run(_chat(controller, agent, _lines(), llm))
    if audit_json is not None:
        audit_json.write_text(
            json.dumps([e.model_dump(mode="json") for e in state.audit], indent=2) + "\n",
            encoding="utf-8",
        )


def _lines() -> list[str] | None:
    """None reads interactively; piped input is read whole (for scripts and tests)."""
    return None if sys.stdin.isatty() else sys.stdin.read().splitlines()


async def _chat(
    controller: Controller, agent: LoadedAgent, script: list[str] | None, llm: LLM | None
) -> AgentState:
    try:
        return await _converse(controller, agent, script, llm.phraser if llm else None)
    finally:
        if llm is not None:
            await llm.aclose()


async def _converse(
    controller: Controller, agent: LoadedAgent, script: list[str] | None, phraser: Phraser | None
) -> AgentState:
    context = ToolContext(call_id="chat", slots={}, context={}, knowledge=agent.knowledge)
    state = controller.new_state({"channel": "chat"})
    outcome = await controller.decide(state, TurnInput(TurnKind.START), context)
    state = outcome.state
    await _show(outcome, controller.spec, phraser, "")
    lines = iter(script) if script is not None else None
    while not state.ended:
        line = _next_line(lines)
        if line is None or line.strip() == "/quit":
            turn = TurnInput(TurnKind.HANGUP)
        elif line.startswith("/dtmf"):
            turn = TurnInput(TurnKind.DTMF, dtmf=line.removeprefix("/dtmf").strip())
        elif line.strip() == "/silence":
            turn = TurnInput(TurnKind.NO_INPUT)
        else:
            turn = TurnInput(TurnKind.SPEECH, text=line.strip())
        outcome = await controller.decide(state, turn, context)
        state = outcome.state
        await _show(outcome, controller.spec, phraser, turn.text)
    return state


def _next_line(lines: object) -> str | None:
    if lines is None:
        try:
            return _out.input("[bold]caller> [/bold]")
        except (EOFError, KeyboardInterrupt):
            return None
    line = next(lines, None)  # type: ignore[call-overload]
    if line is not None:
        _out.print(f"[bold]caller> [/bold]{escape(line)}")
    return line  # type: ignore[no-any-return]


async def _show(outcome: Outcome, spec: AgentSpec, phraser: Phraser | None, latest: str) -> None:
    audit = outcome.audit
    reply: list[str | AgentAction] = outcome.reply
    if phraser is not None:
        speech = await phrased_speech(phraser, spec, outcome, outcome.state.history, latest)
        reply = [speech, *(item for item in reply if not isinstance(item, str))]
    detail = [f"decision: {audit.decision}"]
    if audit.intent:
        detail.append(f"intent {audit.intent} ({audit.intent_score})")
    detail.extend(f"{slot} {result}" for slot, result in audit.slot_results.items())
    if audit.tool_calls:
        detail.append(
            "tools: "
            + ", ".join(
                f"{t.name}" + (f" failed: {t.error}" if t.error else "") for t in audit.tool_calls
            )
        )
    if audit.proposal is not None:
        verdict = "accepted" if audit.proposal.accepted else f"refused: {audit.proposal.refusal}"
        detail.append(f"LLM proposed {audit.proposal.to} ({verdict})")
    detail.extend(f"LLM {c.role}: {c.model} {c.error or c.outcome}".strip() for c in audit.llm)
    moved = f"[{audit.state_before} → {audit.state_after}]"
    _out.print(f"[dim]  {escape(moved)} {escape('; '.join(detail))}[/dim]")
    for item in reply:
        if isinstance(item, str):
            if not item:
                continue
            _out.print(f"[cyan]agent> {escape(item)}[/cyan]")
        else:
            _out.print(f"[magenta]agent does: {escape(str(item))}[/magenta]")


def _load(file: Path) -> LoadedAgent:
    try:
        return load_agent(file)
    except AgentFileError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    _err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(1)
