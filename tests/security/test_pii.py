"""Slot values of the configured PII types stay out of a real call's traces (their log lines
are checked in tests/telemetry/test_served_call.py)."""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan

from bridges.loopback import serving, until
from bridges.test_served_app import states
from opusagent.bridges.dial import dial
from opusagent.bridges.farends import BrowserFarEnd
from opusagent.config import Settings, TelemetrySettings
from telemetry.served import by_name, in_memory_telemetry, traced_app
from telemetry.test_served_call import SPEECH, say_i_lost_my_card

CARD_DIGITS = "4217"


def span_values(spans: tuple[ReadableSpan, ...]) -> list[str]:
    """Every attribute, event and status text the spans carry."""
    values: list[str] = []
    for span in spans:
        values.extend(str(v) for v in (span.attributes or {}).values())
        for event in span.events:
            values.append(event.name)
            values.extend(str(v) for v in (event.attributes or {}).values())
        values.append(span.status.description or "")
    return values


async def test_a_private_slot_value_is_in_no_span_of_the_call() -> None:
    telemetry, exporter = in_memory_telemetry()
    settings = Settings(telemetry=TelemetrySettings(redact_slot_types=["digits"]))
    app = traced_app(SPEECH, telemetry, settings=settings)
    async with serving(app) as url:
        async with dial(BrowserFarEnd(16000), f"{url}/browser") as call:
            await say_i_lost_my_card(call)
            await call.dtmf(f"{CARD_DIGITS}#")
            await until(lambda: "verify" in states(call.heard), within=5)
        await until(lambda: bool(by_name(exporter.get_finished_spans(), "call")))

    spans = exporter.get_finished_spans()
    assert len(by_name(spans, "turn")) >= 2
    assert [v for v in span_values(spans) if CARD_DIGITS in v] == []
