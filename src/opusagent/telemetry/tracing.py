"""OpenTelemetry traces: one tracer provider per application, exporting over OTLP/HTTP when a
collector is configured.

Without a collector spans are still made (a few per turn, never per frame), so every log line
of a call carries its trace id. The exporter is imported only when configured.
"""

from __future__ import annotations

from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Tracer

from opusagent import __version__
from opusagent.config import ConfigError, TelemetrySettings

TRACER_NAME = "opusagent"
OTLP_TRACES_PATH = "/v1/traces"
"""Where an OTLP/HTTP receiver takes traces, below its base URL (OTLP specification)."""


def tracer_provider(settings: TelemetrySettings) -> TracerProvider:
    """A provider for this application's spans, exporting to `settings.otlp_endpoint` if set."""
    resource = Resource.create({SERVICE_NAME: settings.service_name, SERVICE_VERSION: __version__})
    provider = TracerProvider(resource=resource)
    if settings.otlp_endpoint:
        provider.add_span_processor(_otlp_processor(settings.otlp_endpoint))
    return provider


def tracer_of(provider: TracerProvider) -> Tracer:
    return provider.get_tracer(TRACER_NAME, __version__)


def _otlp_processor(endpoint: str) -> SpanProcessor:
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        raise ConfigError(
            "telemetry.otlp_endpoint is set but the OTLP exporter is not installed: "
            "install opusagent[otlp] (opentelemetry-exporter-otlp-proto-http)"
        ) from None

    url = endpoint.rstrip("/") + OTLP_TRACES_PATH
    return BatchSpanProcessor(OTLPSpanExporter(endpoint=url))
