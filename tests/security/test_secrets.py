"""Secrets never reach the logs or the settings dump: every secret setting is set to a value
recognisable in the output, then a real call and REST requests run (an unhandled error too)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from bridges.loopback import serving
from bridges.test_served_app import served_app
from opusagent.bridges.dial import DialError, dial
from opusagent.bridges.farends import AudioCodesFarEnd, TwilioMediaFarEnd
from opusagent.cli import app as cli
from opusagent.config import SECRET_SUFFIXES, Settings, settings_table
from opusagent.telemetry.logging import log_handler

from .served import http_url

SECRET_ROWS = [row for row in settings_table() if row.path[-1].endswith(SECRET_SUFFIXES)]
REDIS_PASSWORD = "SECRET-redis-password"


def secret_of(path: tuple[str, ...]) -> str:
    return "SECRET-" + "-".join(path)


def every_secret_set() -> dict[str, Any]:
    """Settings values with every secret setting (any group) set to its recognisable value."""
    values: dict[str, Any] = {}
    for row in SECRET_ROWS:
        *groups, name = row.path
        node = values
        for group in groups:
            node = node.setdefault(group, {})
        node[name] = secret_of(row.path)
    return values


SECRETS = [secret_of(row.path) for row in SECRET_ROWS]


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    """Every log line the server writes (from DEBUG up), through `opusagent serve`'s handler."""
    lines = io.StringIO()
    settings = Settings.model_validate(every_secret_set())
    handler = log_handler(settings, lines)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_every_provider_credential_and_api_key_is_a_secret_setting() -> None:
    names = {row.path for row in SECRET_ROWS}

    assert {("bridges", "api_key"), ("bridges", "twilio_auth_token"), ("llm_api_key",)} <= names
    assert ("realtime", "api_key") in names


async def test_a_call_and_rest_requests_log_no_secret(logs: io.StringIO) -> None:
    app = served_app([], **every_secret_set())
    api_key = secret_of(("bridges", "api_key"))

    @app.get("/explode")
    async def explode() -> None:
        raise RuntimeError(f"the database refused key {api_key}")

    async with serving(app) as url:
        async with httpx.AsyncClient(base_url=http_url(url)) as http:
            keyed = await http.get("/live/calls", headers={"X-API-Key": api_key})
            wrong = await http.get("/live/calls", headers={"X-API-Key": "nope-0123"})
            failed = await http.get("/explode")
        media = f"{url}/twilio/media"
        signed = "wss" + media.removeprefix("ws")
        token = secret_of(("bridges", "twilio_auth_token"))
        far = TwilioMediaFarEnd(auth_token=token, signed_url=signed)
        async with dial(far, media) as call:
            await call.wait_until_quiet(0.2, timeout=5)
        unsigned = AudioCodesFarEnd.for_url(f"{url}/audiocodes", token="not-the-token")
        with pytest.raises(DialError, match="403"):
            async with dial(unsigned, f"{url}/audiocodes"):
                pass

    text = logs.getvalue()
    assert (keyed.status_code, wrong.status_code, failed.status_code) == (200, 401, 500)
    assert "Twilio stream closed" in text
    assert "the database refused key ***" in text
    assert [secret for secret in SECRETS if secret in text] == []


def test_config_show_masks_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    for row in SECRET_ROWS:
        monkeypatch.setenv(row.env_var, secret_of(row.path))
    monkeypatch.setenv("OPUSAGENT_REDIS_URL", f"redis://:{REDIS_PASSWORD}@cache:6379/0")

    result = CliRunner().invoke(cli, ["config", "--show"], env={"COLUMNS": "400"})

    assert result.exit_code == 0, result.output
    assert "***" in result.output
    assert "redis://:***@cache:6379/0" in result.output
    leaked = [s for s in [*SECRETS, REDIS_PASSWORD] if s in result.output]
    assert leaked == []
