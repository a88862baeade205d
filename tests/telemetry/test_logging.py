"""Log lines: JSON or console, the call's fields on every line of a call, secrets hidden."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from opusagent.config import BridgeSettings, Settings, TelemetrySettings
from opusagent.telemetry.logging import log_handler

from .served import in_memory_telemetry


def logged(
    settings: Settings, write: logging.Logger | None = None
) -> tuple[logging.Logger, io.StringIO]:
    """A logger whose lines go through the server's handler into a buffer."""
    lines = io.StringIO()
    logger = write or logging.getLogger(f"test.{id(lines)}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(log_handler(settings, lines))
    return logger, lines


def json_settings(**values: object) -> Settings:
    return Settings(telemetry=TelemetrySettings(log_format="json"), **values)  # type: ignore[arg-type]


def test_a_json_line_outside_a_call_has_no_call_fields() -> None:
    logger, lines = logged(json_settings())

    logger.info("listening on %s", 8080)

    line = json.loads(lines.getvalue())
    assert line["message"] == "listening on 8080"
    assert (line["level"], line["logger"]) == ("info", logger.name)
    assert "call_id" not in line and "trace_id" not in line


def test_secrets_of_the_settings_are_hidden_in_messages_and_tracebacks() -> None:
    settings = json_settings(
        bridges=BridgeSettings(api_key="key-0123456789", twilio_auth_token="tok-abcdef"),
        redis_url="redis://:hunter22@redis:6379/0",
    )
    logger, lines = logged(settings)

    try:
        raise ValueError("bad token tok-abcdef")
    except ValueError:
        logger.exception("key key-0123456789 and redis://:hunter22@redis:6379/0")

    text = lines.getvalue()
    assert "key-0123456789" not in text and "tok-abcdef" not in text and "hunter22" not in text
    line = json.loads(text)
    assert line["message"] == "key *** and redis://:***@redis:6379/0"
    assert "ValueError: bad token ***" in line["exception"]


async def test_a_line_written_in_a_calls_task_names_the_call_and_hides_its_private_values() -> None:
    telemetry, _ = in_memory_telemetry()
    logger, lines = logged(json_settings())
    watch = telemetry.watch(
        "CA42", bridge="twilio", agent="bank_card", private=lambda: ["1980-03-03"]
    )

    async def in_the_call() -> None:
        watch.enter()
        logger.info("born on 1980-03-03")

    await asyncio.create_task(in_the_call())
    logger.info("outside the call: 1980-03-03")
    watch.finish("hangup")

    inside, outside = (json.loads(line) for line in lines.getvalue().splitlines())
    assert inside["message"] == "born on ***"
    assert (inside["call_id"], inside["agent"], inside["bridge"]) == ("CA42", "bank_card", "twilio")
    assert inside["trace_id"] == watch.trace_id and len(watch.trace_id) == 32
    assert outside["message"] == "outside the call: 1980-03-03" and "call_id" not in outside


async def test_a_console_line_of_a_call_starts_with_the_call_and_agent() -> None:
    telemetry, _ = in_memory_telemetry()
    settings = Settings(telemetry=TelemetrySettings(log_format="console"))
    logger, lines = logged(settings)
    watch = telemetry.watch("CA7", bridge="browser", agent="clinic_triage")

    async def in_the_call() -> None:
        watch.enter()
        logger.warning("slow reply")

    await asyncio.create_task(in_the_call())
    watch.finish("hangup")

    assert "[CA7 clinic_triage] slow reply" in lines.getvalue()
    assert "WARNING" in lines.getvalue()


def test_auto_format_is_json_in_production() -> None:
    logger, lines = logged(Settings(environment="production"))

    logger.info("hello")

    assert json.loads(lines.getvalue())["message"] == "hello"
