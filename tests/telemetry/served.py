"""The real app and agents on loopback, with fake instant speech stages and telemetry that
keeps its spans in memory, and a scraper for its `/metrics`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import httpx
from fastapi import FastAPI
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from opusagent.app import create_app
from opusagent.call.turn_policy import TurnPolicy
from opusagent.config import Settings
from opusagent.telemetry import Metrics, Telemetry
from opusagent.testing import FakeTTS, FakeVAD, ScriptedSTT, Utterance

POLICY = TurnPolicy(end_of_turn_silence_ms=200, no_input_timeout_ms=0)
STT_FINAL_DELAY_S = 0.05


def in_memory_telemetry() -> tuple[Telemetry, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return Telemetry(Metrics(), provider), exporter


def traced_app(
    utterances: list[Utterance],
    telemetry: Telemetry,
    *,
    seconds_per_word: float = 0.01,
    settings: Settings | None = None,
) -> FastAPI:
    settings = (settings or Settings()).model_copy(update={"turn": POLICY})
    app = create_app(settings, loaders={}, telemetry=telemetry)
    voice = app.state.voice
    voice.vad, voice.stt = FakeVAD(), ScriptedSTT(utterances, final_delay_s=STT_FINAL_DELAY_S)
    voice.tts = FakeTTS(seconds_per_word=seconds_per_word, chunk_s=0.2)
    return app


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(base_url: str) -> Samples:
    """Every sample `/metrics` shows."""
    async with httpx.AsyncClient(base_url=base_url) as http:
        response = await http.get("/metrics")
    response.raise_for_status()
    return parse(response.text)


def parse(text: str) -> Samples:
    """Samples by name and labels, read by prometheus_client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def scrape_until(
    base_url: str, done: Callable[[Samples], bool], within: float = 5.0
) -> Samples:
    """Scrape until `done` holds for what is shown; fails after `within` seconds."""
    async with asyncio.timeout(within):
        while not done(samples := await scrape(base_url)):  # noqa: ASYNC110 - over HTTP
            await asyncio.sleep(0.05)
    return samples


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def children(spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> Mapping[str, ReadableSpan]:
    """The spans whose parent is `parent`, by name (one of each name expected)."""
    parent_id = parent.context.span_id
    return {s.name: s for s in spans if s.parent is not None and s.parent.span_id == parent_id}
