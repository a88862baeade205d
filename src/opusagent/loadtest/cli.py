"""`opusagent loadtest`: many simulated provider calls into a server on this machine, with a
progress bar, the figures printed, and JSON plus a latency histogram written."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from opusagent.call.stages import Samples
from opusagent.cli_options import ConfigFileOption
from opusagent.config import ConfigError, load_settings
from opusagent.loadtest.plan import (
    MAX_CALLS,
    MAX_DURATION_S,
    LoadPlan,
    LoadPlanError,
    check_bounds,
    loopback_url,
)
from opusagent.loadtest.report import summarize, summary_table, warnings, write_histogram
from opusagent.loadtest.runner import LoadResult, LoadRun
from opusagent.loadtest.sampler import SamplerError
from opusagent.loadtest.speech import SpeechError, speech_from_text, speech_from_wav
from opusagent.voice.engines import EngineChoiceError
from opusagent.voice.tts import EngineUnavailableError

PROGRESS_EVERY_S = 0.25
SUMMARY_FILE = "loadtest.json"
HISTOGRAM_FILE = "latency.png"


def loadtest_command(
    url: Annotated[
        str,
        typer.Option(
            help="The server's WebSocket URL on this machine, e.g. ws://127.0.0.1:8080 (the "
            "bridge's usual path is added when the URL has none)."
        ),
    ],
    bridge: Annotated[
        str, typer.Option(help="The provider to call as: twilio, audiocodes, acs or browser.")
    ] = "twilio",
    calls: Annotated[
        int, typer.Option(help=f"Concurrent calls to place (at most {MAX_CALLS}).")
    ] = 10,
    ramp: Annotated[
        float, typer.Option(help="Seconds over which the calls are placed, evenly.")
    ] = 5.0,
    duration: Annotated[
        float,
        typer.Option(help=f"Seconds each call lasts (at most {MAX_DURATION_S:g})."),
    ] = 30.0,
    wav: Annotated[
        Path | None,
        typer.Option(help="What the caller says: a 16-bit PCM WAV.", dir_okay=False),
    ] = None,
    say: Annotated[
        str | None,
        typer.Option(help="What the caller says, spoken by the offline synthesiser."),
    ] = None,
    turns: Annotated[
        int | None, typer.Option(help="At most this many turns per call (default: no limit).")
    ] = None,
    quiet: Annotated[
        float,
        typer.Option(help="Seconds of silence after which the agent's answer is over.", min=0.1),
    ] = 1.0,
    out: Annotated[
        Path, typer.Option(help="Folder for loadtest.json and latency.png.", file_okay=False)
    ] = Path("loadtest-results"),
    server_pid: Annotated[
        int | None,
        typer.Option(help="The server's process id: sample its CPU and memory (and children)."),
    ] = None,
    idle: Annotated[
        float,
        typer.Option(
            help="With --server-pid: watch the server this many seconds before the first call, "
            "to report its idle CPU and the CPU per call-minute above it.",
            min=0.0,
            max=60.0,
        ),
    ] = 0.0,
    token: Annotated[
        str | None, typer.Option(help="The provider's credential, as for `opusagent dial`.")
    ] = None,
    config: ConfigFileOption = None,
) -> None:
    """Place CALLS simulated provider calls into a server on this machine and measure it.

    Each call speaks the caller's utterance in real time, waits for the agent's answer, and
    does it again until its duration is over. Measured per turn: the time from the caller's
    last voiced frame to the first agent audio frame; between agent audio frames: gaps and
    jitter; per call: drops and errors; with --server-pid: the server's CPU-seconds per
    call-minute and memory per call. Only loopback URLs are dialled.
    """
    try:
        check_bounds(bridge, calls, ramp, duration, turns)
        target = loopback_url(url, bridge)
        speech, rate = _speech(wav, say, config)
        plan = LoadPlan(
            bridge=bridge,
            url=target,
            calls=calls,
            ramp_s=ramp,
            duration_s=duration,
            speech=speech,
            rate=rate,
            turns=turns,
            quiet_s=quiet,
            token=token,
        )
        run = LoadRun(plan, server_pid=server_pid, idle_s=idle)
    except (
        LoadPlanError,
        SpeechError,
        SamplerError,
        ConfigError,
        EngineChoiceError,
        EngineUnavailableError,
    ) as exc:
        _fail(str(exc))
    console = Console()
    result = asyncio.run(_with_progress(run, console))
    summary = summarize(result)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    write_histogram(summary, out / HISTOGRAM_FILE)
    console.print(summary_table(summary))
    for note in warnings(summary):
        console.print(f"Warning: {note}", style="yellow", markup=False, highlight=False)
    console.print(f"Wrote {out / SUMMARY_FILE} and {out / HISTOGRAM_FILE}.", highlight=False)


def _speech(wav: Path | None, say: str | None, config: Path | None) -> tuple[Samples, int]:
    if (wav is None) == (say is None):
        raise LoadPlanError("give the caller's words with exactly one of --wav and --say")
    if wav is not None:
        return speech_from_wav(wav)
    assert say is not None
    return speech_from_text(say, load_settings(config))


async def _with_progress(run: LoadRun, console: Console) -> LoadResult:
    plan = run.plan
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} calls done"),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("load", total=plan.calls, status="")
        running = asyncio.create_task(run.run())
        while not running.done():
            progress.update(
                task,
                completed=run.finished,
                status=f"placed {run.placed}, live {run.active}, turns {run.turns}, "
                f"failed {run.failed}",
            )
            await asyncio.wait({running}, timeout=PROGRESS_EVERY_S)
        return running.result()


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(
        f"Error: {message}", style="red", markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)
