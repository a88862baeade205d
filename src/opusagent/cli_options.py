"""Command-line options shared by the `opusagent` sub-commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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
