"""The call records' schema as Alembic revisions (`versions/`), run in code: no alembic.ini.

`upgrade_to_head` runs on a synchronous connection; with an async engine, through
`AsyncConnection.run_sync` (https://alembic.sqlalchemy.org/en/latest/cookbook.html, "Using
Asyncio with Alembic"). A new revision is written by running `alembic.command.revision` with
`alembic_config()`, its `attributes["connection"]` set, and `autogenerate=True`.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

HERE = Path(__file__).parent


def alembic_config() -> Config:
    """Alembic's settings for these migrations."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Bring the database behind `connection` to the newest revision."""
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
