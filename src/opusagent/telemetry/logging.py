"""Logs: one JSON object per line for collectors, or readable lines in development; every line
written during a call names the call, its agent, its state and its trace.

The call comes from a context variable (`current_call`) that the call's tasks carry, so no log
statement has to pass it. Secrets from the settings and the values of private slots (sensitive
ones, and those of the configured PII types) are replaced by `***` before a line is written.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol, TextIO

from rich.console import Console
from rich.logging import RichHandler

from opusagent.config import Settings, secret_values

REDACTED = "***"
MIN_REDACTED_LENGTH = 3
"""Shorter values (a yes, a one-digit choice) are not hidden: they would blank out the line."""


class CallLogContext(Protocol):
    """What a log line says about the call it was written in."""

    @property
    def call_id(self) -> str: ...

    @property
    def agent(self) -> str: ...

    @property
    def bridge(self) -> str: ...

    @property
    def state(self) -> str | None: ...

    @property
    def trace_id(self) -> str: ...

    def private_values(self) -> Iterable[str]:
        """Values of this call's private slots so far."""
        ...


current_call: contextvars.ContextVar[CallLogContext | None] = contextvars.ContextVar(
    "opusagent_current_call", default=None
)
"""The call whose task is running, if any (set by the call's telemetry)."""


class Redactor:
    """Replaces secrets, and the current call's private values, by `***`."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = _usable(secrets)

    def __call__(self, text: str) -> str:
        call = current_call.get()
        private = _usable(call.private_values()) if call is not None else []
        for value in (*self._secrets, *private):
            if value in text:
                text = text.replace(value, REDACTED)
        return text


def _usable(values: Iterable[str]) -> list[str]:
    """Values long enough to hide, longest first (so a value containing another goes whole)."""
    return sorted({v for v in values if len(v) >= MIN_REDACTED_LENGTH}, key=len, reverse=True)


class CallContextFilter(logging.Filter):
    """Adds the call's fields to each record and redacts its message and traceback."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        call = current_call.get()
        record.call_id = call.call_id if call is not None else None
        record.agent = call.agent if call is not None else None
        record.bridge = call.bridge if call is not None else None
        record.state = call.state if call is not None else None
        record.trace_id = call.trace_id if call is not None else None
        record.msg = self._redact(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._redact(_TRACEBACKS.formatException(record.exc_info))
        return True


_TRACEBACKS = logging.Formatter()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the call's fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("call_id", "agent", "bridge", "state", "trace_id"):
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False, default=str)


class ConsoleFormatter(logging.Formatter):
    """The message, prefixed with `[call agent/state]` during a call (Rich adds time and level)."""

    def format(self, record: logging.LogRecord) -> str:
        call_id = getattr(record, "call_id", None)
        message = record.getMessage()
        if call_id is not None:
            agent, state = getattr(record, "agent", None), getattr(record, "state", None)
            message = (
                f"[{call_id} {agent}/{state}] {message}"
                if state
                else f"[{call_id} {agent}] {message}"
            )
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        return message


def log_handler(settings: Settings, stream: TextIO | None = None) -> logging.Handler:
    """The handler every log line of the server goes through, in the configured format, to
    `stream` (standard error by default)."""
    stream = stream or sys.stderr
    handler: logging.Handler
    if _format_of(settings) == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
    else:
        handler = RichHandler(
            console=Console(file=stream), show_path=False, rich_tracebacks=False, markup=False
        )
        handler.setFormatter(ConsoleFormatter())
    handler.addFilter(CallContextFilter(Redactor(secrets_of(settings))))
    return handler


def setup_logging(settings: Settings) -> None:
    """Send every logger's lines (uvicorn's too) through one handler at the configured level."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(log_handler(settings))
    root.setLevel(settings.log_level.upper())


def _format_of(settings: Settings) -> str:
    chosen = settings.telemetry.log_format
    if chosen == "auto":
        return "json" if settings.environment == "production" else "console"
    return chosen


def secrets_of(settings: Settings) -> list[str]:
    """Every secret the settings hold (every group's keys and tokens, passwords in URLs)."""
    return secret_values(settings)
