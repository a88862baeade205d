"""Observability: Prometheus metrics, OpenTelemetry traces and structured logs.

`Telemetry` holds one application's metrics and tracer and watches each call; LLM clients
report their time to first token with `llm_first_token`.
"""

from opusagent.config import Settings
from opusagent.telemetry.calls import CallWatch, Telemetry, llm_first_token
from opusagent.telemetry.metrics import Metrics
from opusagent.telemetry.tracing import tracer_provider


def telemetry_from_settings(settings: Settings) -> Telemetry:
    """New metrics and a tracer (exporting if `settings.telemetry` names a collector)."""
    return Telemetry(Metrics(), tracer_provider(settings.telemetry))


__all__ = ["CallWatch", "Metrics", "Telemetry", "llm_first_token", "telemetry_from_settings"]
