"""The `opusagent` command line."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import uvicorn
from rich.console import Console
from rich.table import Table
from rich.text import Text

from opusagent import __version__
from opusagent.agent.cli import agent_app
from opusagent.agent.fsa.catalog import UnknownAgentError
from opusagent.agent.fsa.loader import AgentFileError
from opusagent.app import create_app
from opusagent.call.stages import Samples
from opusagent.cli_options import ConfigFileOption
from opusagent.config import (
    ConfigError,
    LogLevel,
    Settings,
    TtsEngine,
    current_value,
    load_settings,
    settings_markdown,
    settings_table,
)
from opusagent.dial_cli import dial_command
from opusagent.drain import DrainingServer
from opusagent.loadtest.cli import loadtest_command
from opusagent.sessions.records_cli import calls_app
from opusagent.simulate.cli import simulate_command
from opusagent.telemetry.logging import setup_logging
from opusagent.voice.engines import EngineChoiceError, build_stt, build_tts
from opusagent.voice.offline import (
    Segment,
    Synthesis,
    TimedTranscript,
    find_utterances,
    read_wav,
    resample,
    synthesize,
    telephone,
    write_wav,
)
from opusagent.voice.offline import transcribe as transcribe_segments
from opusagent.voice.stt import STTUnavailableError
from opusagent.voice.stt.pocketsphinx import PocketsphinxSTT
from opusagent.voice.tts import EngineUnavailableError
from opusagent.voice.vad import SileroModel, SileroVAD
from opusagent.voice.workers import ModelWorkers

T = TypeVar("T")

SHUTDOWN_GRACE_S = 10
"""After the drain, how long closing connections may take before their tasks are cancelled."""

app = typer.Typer(
    name="opusagent",
    help=(
        "OpusAgent: real-time AI voice agents for telephone calls, running offline by default. "
        "Settings come from the defaults, then an optional YAML file given with --config, then "
        "OPUSAGENT_* environment variables; `opusagent config --show` lists them all."
    ),
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(agent_app, name="agent")
app.add_typer(calls_app, name="calls")
app.command("dial")(dial_command)
app.command("loadtest")(loadtest_command)
app.command("simulate")(simulate_command)


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Address to bind, e.g. 0.0.0.0 for every interface.")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port to listen on.", min=1, max=65535)
    ] = None,
    config: ConfigFileOption = None,
    log_level: Annotated[LogLevel | None, typer.Option(help="Lowest level of log printed.")] = None,
) -> None:
    """Start the server and run until interrupted (Ctrl+C, or SIGTERM, which drains first).

    On SIGTERM the server stops taking calls and waits up to drain_timeout_s for live calls
    to end before it exits. Options given here override the config file and the environment.
    """
    overrides = {"host": host, "port": port, "log_level": log_level}
    settings = _load(config, {key: value for key, value in overrides.items() if value is not None})
    setup_logging(settings)
    try:
        served = create_app(settings)
    except (AgentFileError, UnknownAgentError, ConfigError) as exc:
        _fail(f"cannot serve the agents: {exc}")
    server_config = uvicorn.Config(
        served,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        log_config=None,  # uvicorn's lines go through the server's own handler
        lifespan="on",
        timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
    )
    DrainingServer(server_config, served.state.drain).run()


@app.command()
def version() -> None:
    """Print the installed OpusAgent version."""
    typer.echo(f"opusagent {__version__}")


@app.command("config")
def config_command(
    show: Annotated[
        bool, typer.Option("--show", help="Print every setting with its current value (default).")
    ] = False,
    markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the settings reference as Markdown.")
    ] = False,
    config: ConfigFileOption = None,
) -> None:
    """Show every setting: its environment variable, type, default and current value."""
    if show and markdown:
        raise typer.BadParameter("choose one of --show and --markdown")
    if markdown:
        typer.echo(settings_markdown(), nl=False)
        return
    settings = _load(config)
    rows = settings_table()
    console = Console()
    # Fixed widths keep every variable name on one line and give descriptions the rest.
    border_width = 10
    name_width = max(len(row.env_var) for row in rows)
    value_width = min(max((console.width - name_width - border_width) // 2, 10), 30)
    setting_width = max(name_width, console.width - 2 * value_width - border_width)
    table = Table(title="OpusAgent settings", show_lines=True)
    table.add_column("Environment variable", width=setting_width)
    table.add_column("Value", width=value_width, style="bold")
    table.add_column("Default", width=value_width)
    for row in rows:
        setting = Text(row.env_var, style="bold")
        setting.append(f"\n{row.type_name}: {row.description}", style="dim")
        table.add_row(setting, current_value(settings, row), row.default)
    console.print(table)


@app.command()
def say(
    text: Annotated[str, typer.Argument(help="What to say.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="WAV file to write.")],
    tts: Annotated[
        TtsEngine | None, typer.Option(help="Synthesiser (default: the setting).")
    ] = None,
    voice: Annotated[str | None, typer.Option(help="Voice of that synthesiser.")] = None,
    speed: Annotated[float | None, typer.Option(help="Speaking speed; 1.0 is normal.")] = None,
    rate: Annotated[
        int | None, typer.Option(help="Sample rate of the file (default: the voice's own).")
    ] = None,
    config: ConfigFileOption = None,
) -> None:
    """Speak TEXT into a WAV file with the offline synthesiser (no network)."""
    overrides = {"tts": tts, "tts_voice": voice, "tts_speed": speed}
    settings = _load(config, {key: value for key, value in overrides.items() if value is not None})
    result = _run_voice(_say(settings, text))
    samples, out_rate = result.samples, result.rate
    if rate is not None and rate != out_rate:
        samples, out_rate = resample(samples, out_rate, rate), rate
    write_wav(output, samples, out_rate)
    Console().print(
        f"Wrote {output}: {len(samples) / out_rate:.2f} s at {out_rate} Hz "
        f"(first audio after {result.first_audio_s * 1000:.0f} ms, "
        f"all in {result.seconds * 1000:.0f} ms)",
        highlight=False,
    )


@app.command()
def transcribe(
    wav: Annotated[
        Path, typer.Argument(help="A 16-bit PCM WAV file.", exists=True, dir_okay=False)
    ],
    grammar: Annotated[
        list[str] | None,
        typer.Option(
            "--grammar",
            "-g",
            help="An expected phrase (repeat the option for each); <digits:16> stands for "
            "16 spoken digits. Without it: free speech.",
        ),
    ] = None,
    phone: Annotated[
        bool, typer.Option("--phone", help="Hear it as a phone call would: 8 kHz mu-law first.")
    ] = False,
    config: ConfigFileOption = None,
) -> None:
    """Transcribe the utterances of a WAV file with the offline recogniser (no network)."""
    settings = _load(config)
    samples, rate = read_wav(wav)
    if phone:
        samples, rate = telephone(samples, rate), 8000
    vad = SileroVAD(SileroModel(settings.vad_threads))
    audio = resample(samples, rate, vad.sample_rate)
    segments = find_utterances(audio, vad, settings.turn)
    console = Console()
    if not segments:
        console.print("No speech found.")
        return
    for line in _run_voice(_transcribe(settings, audio, segments, grammar)):
        console.print(
            f"[dim]{line.segment.start:6.2f}-{line.segment.end:6.2f} s[/dim]  {line.text}  "
            f"[dim](final {line.final_after_s * 1000:.0f} ms after the audio was in)[/dim]"
        )


async def _say(settings: Settings, text: str) -> Synthesis:
    workers = ModelWorkers(1)
    try:
        tts = build_tts(settings, workers)
        await asyncio.to_thread(tts.load)
        return await synthesize(tts, text)
    finally:
        workers.close()


async def _transcribe(
    settings: Settings, audio: Samples, segments: list[Segment], grammar: list[str] | None
) -> list[TimedTranscript]:
    workers = ModelWorkers(1)
    stt = build_stt(settings, workers)
    try:
        await asyncio.to_thread(stt.load)
        return await transcribe_segments(audio, stt, segments, grammar=grammar or None)
    finally:
        if isinstance(stt, PocketsphinxSTT):
            stt.close()
        workers.close()


def _run_voice(work: Coroutine[Any, Any, T]) -> T:
    """Run speech work; an engine that cannot run here is a clear error, not a traceback."""
    try:
        return asyncio.run(work)
    except (EngineChoiceError, EngineUnavailableError, STTUnavailableError) as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    Console(stderr=True).print(
        f"Error: {message}", style="red", markup=False, highlight=False, soft_wrap=True
    )
    raise typer.Exit(1)


def _load(config_file: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings, or a clear message and exit status 1 when they cannot be loaded."""
    try:
        return load_settings(config_file, overrides)
    except ConfigError as exc:
        _fail(str(exc))
