"""The `opusagent` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer
import uvicorn
from rich.console import Console
from rich.table import Table
from rich.text import Text

from opusagent import __version__
from opusagent.app import create_app
from opusagent.config import (
    ConfigError,
    LogLevel,
    Settings,
    current_value,
    load_settings,
    settings_markdown,
    settings_table,
)

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

ConfigFileOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        help="YAML file of settings; environment variables override it.",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
]


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
    """Start the server and run until interrupted (Ctrl+C or SIGTERM).

    Options given here override the config file and the environment.
    """
    overrides = {"host": host, "port": port, "log_level": log_level}
    settings = _load(config, {key: value for key, value in overrides.items() if value is not None})
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)-9s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        lifespan="on",
    )


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


def _load(config_file: Path | None, overrides: dict[str, Any] | None = None) -> Settings:
    """Settings, or a clear message and exit status 1 when they cannot be loaded."""
    try:
        return load_settings(config_file, overrides)
    except ConfigError as exc:
        Console(stderr=True).print(
            f"Error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
