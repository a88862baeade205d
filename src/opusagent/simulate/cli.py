"""`opusagent simulate`: simulated callers against an agent, judged, with reports."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from opusagent.agent.fsa.catalog import UnknownAgentError
from opusagent.agent.fsa.graph import GraphError
from opusagent.agent.fsa.loader import AgentFileError, LoadedAgent, load_agent
from opusagent.cli_options import ConfigFileOption
from opusagent.config import ConfigError, Settings, load_settings
from opusagent.simulate.dual import dual_plan, outbound_agent, run_dual
from opusagent.simulate.files import SimulationFileError
from opusagent.simulate.llm import SimulationLLM, simulation_llm
from opusagent.simulate.personas import DEFAULT_PERSONA, Persona, load_persona
from opusagent.simulate.report import summary_json, write_reports
from opusagent.simulate.runner import BRIDGES, Bridge, Plan, RunPlan, RunResult, run_all
from opusagent.simulate.scenarios import MODES, LoadedScenario, Mode, load_scenarios
from opusagent.simulate.server import (
    AgentServer,
    SimulationServerError,
    serve_agent,
    served_settings,
)
from opusagent.simulate.voice import CallerVoice
from opusagent.voice.engines import EngineChoiceError
from opusagent.voice.stt import STTUnavailableError
from opusagent.voice.tts import EngineUnavailableError

INTERRUPTED_EXIT = 130
T = TypeVar("T")


def simulate_command(
    agent: Annotated[
        Path,
        typer.Option(help="The agent under test (its YAML file).", exists=True, dir_okay=False),
    ],
    scenario: Annotated[
        Path | None,
        typer.Option(
            help="A scenario file, or a folder of them (a scenario pack); optional with "
            "--caller-agent.",
            exists=True,
        ),
    ] = None,
    persona: Annotated[
        Path | None,
        typer.Option(
            help="A persona file for every scenario (default: each scenario's own, or a calm "
            "caller).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    runs: Annotated[int, typer.Option(help="Calls per scenario.", min=1)] = 1,
    concurrency: Annotated[int, typer.Option(help="Calls under way at once.", min=1)] = 1,
    mode: Annotated[
        str,
        typer.Option(
            help="audio: speech over a real bridge (TTS, telephone codec, STT both ways); "
            "text: the agent's web chat, no speech (fast)."
        ),
    ] = "audio",
    bridge: Annotated[
        str, typer.Option(help=f"Audio mode: the provider to call as ({', '.join(BRIDGES)}).")
    ] = "twilio",
    out: Annotated[
        Path, typer.Option(help="Folder for the reports (index.html, one page per run).")
    ] = Path("simulation-report"),
    url: Annotated[
        str | None,
        typer.Option(
            help="Call the agent on a server already running there (e.g. http://host:8080; "
            "audio mode) instead of serving it here."
        ),
    ] = None,
    api_key: Annotated[
        str | None, typer.Option(help="With --url: the server's API key, to read call records.")
    ] = None,
    caller_agent: Annotated[
        Path | None,
        typer.Option(
            help="Dual-agent call: this (outbound) agent calls the --agent over --bridge, with "
            "this process's voice stack; a --scenario's criteria judge the called agent.",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    config: ConfigFileOption = None,
) -> None:
    """Call an agent with simulated callers, judge each call, and write reports.

    Each scenario's caller follows its script (or is itself a Finite State Agent), in the
    persona's manner; every call is judged against the scenario's criteria from the agent's own
    record (path, audit, transcript). The agent is served here on a loopback port unless --url
    is given. A scenario's LLM caller and rubric use the configured LLM (OPUSAGENT_LLM_*).
    With --caller-agent, an agent of ours calls the agent instead (audio). Ctrl-C stops the
    calls under way and writes a partial report. The exit status is 1 when any run failed,
    130 when interrupted.
    """
    chosen_mode = _choice("--mode", mode, MODES)
    chosen_bridge = _choice("--bridge", bridge, BRIDGES)
    if url is not None and chosen_mode == "text":
        _fail("text mode reads each conversation in this process: drop --url, or use --mode audio")
    if caller_agent is not None and chosen_mode == "text":
        _fail("a dual-agent call (--caller-agent) is an audio call: drop --mode text")
    if scenario is None and caller_agent is None:
        _fail("give --scenario (a scenario file or pack), or --caller-agent for a dual-agent call")
    try:
        settings = load_settings(config)
        loaded = load_agent(agent)
        if caller_agent is not None:
            load_agent(caller_agent)
        if scenario is not None:
            scenarios = load_scenarios(scenario)
            plans = _plans(scenarios, loaded, persona, runs, chosen_mode, chosen_bridge)
        elif caller_agent is not None:
            plans = [dual_plan(caller_agent, chosen_bridge, n) for n in range(1, runs + 1)]
    except (ConfigError, AgentFileError, SimulationFileError) as exc:
        _fail(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    console = Console()
    try:
        results, interrupted = asyncio.run(
            _simulate(
                plans, settings, agent, chosen_mode, out, concurrency, url, api_key, caller_agent
            )
        )
    except (
        ConfigError,
        SimulationServerError,
        AgentFileError,
        UnknownAgentError,
        EngineChoiceError,
        EngineUnavailableError,
        STTUnavailableError,
    ) as exc:
        _fail(str(exc))
    try:
        index = write_reports(results, loaded.spec, out)
    except GraphError as exc:
        _fail(str(exc))
    _print_summary(console, results, index)
    if interrupted:
        raise typer.Exit(INTERRUPTED_EXIT)
    if not all(result.passed for result in results):
        raise typer.Exit(1)


def _choice(option: str, value: str, choices: tuple[T, ...]) -> T:
    for choice in choices:
        if value == choice:
            return choice
    _fail(f"{option} {value!r}: choose one of {', '.join(map(str, choices))}")


def _plans(
    scenarios: list[LoadedScenario],
    agent: LoadedAgent,
    persona_file: Path | None,
    runs: int,
    mode: Mode,
    bridge: Bridge,
) -> list[Plan]:
    override = load_persona(persona_file) if persona_file is not None else None
    plans = []
    for loaded in scenarios:
        written_for = loaded.scenario.agent
        if written_for is not None and written_for != agent.spec.name:
            raise SimulationFileError(
                f"{loaded.path}: written for agent {written_for!r}, not {agent.spec.name!r}"
            )
        persona = override or _persona_of(loaded)
        plans += [Plan(loaded, persona, n, mode, bridge) for n in range(1, runs + 1)]
    return plans


def _persona_of(loaded: LoadedScenario) -> Persona:
    if loaded.scenario.persona is None:
        return DEFAULT_PERSONA
    return load_persona(loaded.relative(loaded.scenario.persona))


async def _simulate(
    plans: list[Plan],
    settings: Settings,
    agent: Path,
    mode: Mode,
    out: Path,
    concurrency: int,
    url: str | None,
    api_key: str | None,
    caller_agent: Path | None = None,
) -> tuple[list[RunResult], bool]:
    """Every run; and whether Ctrl-C stopped them."""
    llm = simulation_llm(settings)
    try:
        async with _server(settings, agent, mode, out, url, api_key) as server:
            if caller_agent is not None:
                async with outbound_agent(settings, caller_agent, llm) as outbound:

                    async def dual(plan: Plan) -> RunResult:
                        return await run_dual(plan, server, outbound, out, llm)

                    return await _with_progress(plans, server, None, out, concurrency, llm, dual)
            voice = CallerVoice(settings) if mode == "audio" else None
            try:
                if voice is not None:
                    await voice.load()
                return await _with_progress(plans, server, voice, out, concurrency, llm)
            finally:
                if voice is not None:
                    await voice.aclose()
    finally:
        if llm is not None:
            await llm.aclose()


@contextlib.asynccontextmanager
async def _server(
    settings: Settings, agent: Path, mode: Mode, out: Path, url: str | None, api_key: str | None
) -> AsyncIterator[AgentServer]:
    if url is not None:
        yield AgentServer(url, agent=load_agent(agent).spec.name, api_key=api_key)
        return
    async with serve_agent(served_settings(settings, agent, out), mode) as server:
        yield server


async def _with_progress(
    plans: list[Plan],
    server: AgentServer,
    voice: CallerVoice | None,
    out: Path,
    concurrency: int,
    llm: SimulationLLM | None = None,
    run: RunPlan | None = None,
) -> tuple[list[RunResult], bool]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    counts = {"passed": 0, "failed": 0}
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("simulated calls", total=len(plans))

        def done(result: RunResult) -> None:
            counts["passed" if result.passed else "failed"] += 1
            progress.update(
                task,
                advance=1,
                description=f"simulated calls: {counts['passed']} passed, {counts['failed']} not",
            )

        running = asyncio.create_task(
            run_all(
                plans, server, voice, out, concurrency=concurrency, on_done=done, llm=llm, run=run
            )
        )
        loop = asyncio.get_running_loop()
        interrupted = False

        def stop() -> None:
            nonlocal interrupted
            interrupted = True
            running.cancel()

        loop.add_signal_handler(signal.SIGINT, stop)
        try:
            results = await running
        except asyncio.CancelledError:
            results = []
        finally:
            loop.remove_signal_handler(signal.SIGINT)
    return results, interrupted


def _print_summary(console: Console, results: list[RunResult], index: Path) -> None:
    summary = summary_json(results)
    table = Table(title="Simulated calls")
    for column in ("Scenario", "Runs", "Passed", "Failed", "Errors", "Skipped", "Pass rate"):
        table.add_column(column)
    for name, entry in summary["scenarios"].items():
        rate = "" if entry["pass_rate"] is None else f"{entry['pass_rate']:.0%}"
        table.add_row(
            name,
            *(str(entry[k]) for k in ("runs", "passed", "failed", "errors", "skipped")),
            rate,
        )
    console.print(table)
    for result in results:
        if result.caller_record is not None:
            callee = " → ".join(result.record.states_reached()) if result.record else "(no record)"
            console.print(
                f"{result.plan.label}: calling agent {' → '.join(result.caller_path)}; "
                f"called agent {callee}",
                markup=False,
                highlight=False,
            )
        if result.passed:
            continue
        console.print(f"[bold red]{result.plan.label}[/]: {result.status}", highlight=False)
        if result.error:
            console.print(f"  {result.error}", markup=False, highlight=False)
        for verdict in result.verdicts:
            if not verdict.passed:
                console.print(
                    f"  ✗ {verdict.criterion}: {verdict.explanation}", markup=False, highlight=False
                )
    console.print(f"Report: {index}", highlight=False)


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(
        f"Error: {message}", style="red", markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)
