"""Traces beyond the served call: the LLM client's report, and export to a collector."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from opusagent.call.stages import ReplyPart, TurnKind, UserTurn
from opusagent.config import TelemetrySettings
from opusagent.telemetry import llm_first_token
from opusagent.telemetry.tracing import tracer_of, tracer_provider
from opusagent.testing import FakeTTS, ScriptedAgent, Timeline, run_timeline

from .served import by_name, children, in_memory_telemetry, parse, sample


def test_an_llm_clients_first_token_is_a_span_of_its_turn_and_a_metric() -> None:
    telemetry, exporter = in_memory_telemetry()
    watch = telemetry.watch("CA1", bridge="twilio", agent="assistant")

    def answer(turn: UserTurn) -> list[ReplyPart]:
        if turn.kind is TurnKind.SPEECH:
            llm_first_token(0.25, model="small")
        return ["Hello there."]

    result = run_timeline(
        Timeline(duration=3.0).say("what time is it", at=1.0),
        agent=watch.wrap_agent(ScriptedAgent(answer)),
        tts=watch.wrap_tts(FakeTTS(seconds_per_word=0.05)),
    )
    watch.finish(result.end_reason)

    spans = exporter.get_finished_spans()
    [start, speech] = by_name(spans, "turn")
    assert "llm" not in children(spans, start)
    llm = children(spans, speech)["llm"]
    assert llm.attributes is not None and llm.attributes["opusagent.llm.model"] == "small"
    assert (llm.end_time or 0) - (llm.start_time or 0) == pytest.approx(0.25e9, abs=1e3)
    shown = parse(telemetry.metrics.exposition().decode())
    assert sample(shown, "opusagent_llm_first_token_seconds_count", model="small") == 1


def test_llm_first_token_outside_a_call_records_nothing() -> None:
    telemetry, exporter = in_memory_telemetry()

    llm_first_token(0.1, model="small")

    assert exporter.get_finished_spans() == ()
    shown = parse(telemetry.metrics.exposition().decode())
    assert sample(shown, "opusagent_llm_first_token_seconds_count", model="small") is None


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps each protobuf export request it is sent."""

    received: ClassVar[list[tuple[str, ExportTraceServiceRequest]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.received.append((self.path, request))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        Collector.received.clear()


def test_spans_are_exported_over_otlp_http_when_a_collector_is_configured(collector: str) -> None:
    provider = tracer_provider(TelemetrySettings(otlp_endpoint=collector, service_name="voice-1"))

    with tracer_of(provider).start_as_current_span("call"):
        pass
    provider.shutdown()

    [(path, request)] = Collector.received
    assert path == "/v1/traces"
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
    assert service["service.name"] == "voice-1"
    assert [s.name for s in resource_spans.scope_spans[0].spans] == ["call"]
