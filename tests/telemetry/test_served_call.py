"""A real call over the browser bridge on loopback shows in `/metrics`, in the traces and in
the logs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridges.loopback import serving, until
from bridges.test_served_app import loud, states
from opusagent.bridges.dial import DialSession, dial
from opusagent.bridges.farends import BrowserFarEnd
from opusagent.config import Settings, TelemetrySettings
from opusagent.telemetry import Telemetry
from opusagent.telemetry.logging import log_handler
from opusagent.testing import Utterance

from .served import by_name, children, in_memory_telemetry, sample, scrape, scrape_until, traced_app

CALL = {"bridge": "browser", "agent": "bank_card"}
SPEECH = [Utterance(0.3, 0.8, "I lost my card")]


@pytest.fixture
def telemetry() -> tuple[Telemetry, InMemorySpanExporter]:
    return in_memory_telemetry()


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """The server's JSON log lines, as `opusagent serve` writes them, from INFO up."""
    lines = io.StringIO()
    root = logging.getLogger()
    handler = log_handler(Settings(telemetry=TelemetrySettings(log_format="json")), lines)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def say_i_lost_my_card(call: DialSession) -> None:
    await call.wait_until_quiet(0.3, timeout=10)
    await call.silence(0.3)
    await call.play(loud(0.5), 16000)
    await until(lambda: "identify" in states(call.heard), within=5)
    await call.wait_until_quiet(0.3, timeout=10)


async def test_a_call_shows_in_the_metrics_while_live_and_once_ended(
    telemetry: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    app = traced_app(SPEECH, telemetry[0])
    async with serving(app) as url:
        http = url.replace("ws://", "http://")
        async with dial(BrowserFarEnd(16000), f"{url}/browser") as call:
            await say_i_lost_my_card(call)
            during = await scrape(http)
        after = await scrape_until(
            http,
            lambda shown: sample(shown, "opusagent_calls_total", **CALL, outcome="hangup") == 1,
        )

    assert sample(during, "opusagent_active_calls", **CALL) == 1
    assert sample(after, "opusagent_active_calls", **CALL) == 0
    latency = "opusagent_reply_latency_seconds_count"
    assert sample(after, latency, **CALL, turn="start") == 1
    assert sample(after, latency, **CALL, turn="speech") == 1
    assert sample(after, "opusagent_stt_final_latency_seconds_count", **CALL) == 1
    stt_sum = sample(after, "opusagent_stt_final_latency_seconds_sum", **CALL)
    assert stt_sum is not None and 0.04 < stt_sum < 1.0, "the scripted recogniser's 50 ms delay"
    assert (sample(after, "opusagent_tts_first_audio_seconds_count", **CALL) or 0) >= 2
    assert sample(after, "opusagent_barge_ins_total", **CALL) is None
    assert (sample(after, "opusagent_event_loop_lag_seconds_count") or 0) >= 1


async def test_a_call_is_one_trace_of_turns_with_a_span_per_stage(
    telemetry: tuple[Telemetry, InMemorySpanExporter], json_logs: io.StringIO
) -> None:
    app = traced_app(SPEECH, telemetry[0])
    exporter = telemetry[1]
    async with serving(app) as url, dial(BrowserFarEnd(16000), f"{url}/browser") as call:
        await say_i_lost_my_card(call)
    await until(lambda: bool(by_name(exporter.get_finished_spans(), "call")), within=5)

    spans = exporter.get_finished_spans()
    [call_span] = by_name(spans, "call")
    turns = by_name(spans, "turn")
    assert [t.attributes["opusagent.turn.kind"] for t in turns] == ["start", "speech"]
    assert all(
        t.parent is not None and t.parent.span_id == call_span.context.span_id for t in turns
    )
    assert {s.context.trace_id for s in spans} == {call_span.context.trace_id}
    greeting, answer = (children(spans, turn) for turn in turns)
    assert set(greeting) == {"agent", "tts", "playback"}
    assert set(answer) == {"turn_detection", "stt", "agent", "tts", "playback"}
    stages = [answer[name] for name in ("turn_detection", "stt", "agent", "tts", "playback")]
    starts = [span.start_time or 0 for span in stages]
    assert starts == sorted(starts), "the stages start in the order the turn goes through them"
    assert turns[1].start_time == answer["turn_detection"].start_time
    assert call_span.attributes["opusagent.call_id"] == call.far_end.call_id
    assert call_span.attributes["opusagent.outcome"] == "hangup"

    trace_id = format(call_span.context.trace_id, "032x")
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    [decision] = [line for line in lines if "welcome -> identify" in line["message"]]
    assert decision["trace_id"] == trace_id
    assert decision["call_id"] == call.far_end.call_id
    assert decision["agent"] == "bank_card"
    assert decision["state"] in ("welcome", "identify")


async def test_a_caller_cutting_the_greeting_short_counts_as_a_barge_in(
    telemetry: tuple[Telemetry, InMemorySpanExporter],
) -> None:
    app = traced_app([Utterance(0.5, 1.3, "I lost my card")], telemetry[0], seconds_per_word=0.3)
    async with serving(app) as url:
        async with dial(BrowserFarEnd(16000), f"{url}/browser") as call:
            await call.silence(0.5)
            await call.play(loud(0.8), 16000)
            await until(lambda: "identify" in states(call.heard), within=5)
        shown = await scrape(url.replace("ws://", "http://"))

    assert sample(shown, "opusagent_barge_ins_total", **CALL) == 1
    [greeting, *_] = by_name(telemetry[1].get_finished_spans(), "turn")
    assert greeting.attributes["opusagent.turn.interrupted"] is True


class ToolLog(logging.Filter):
    """Stands for a tool that logs what it looked up, in the call's task, as the agent moves
    from identify to verify (once the card's last four digits are filled)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "identify -> verify" in record.getMessage():
            logging.getLogger("bank_tools").info("looked up the card ending 4217")
        return True


@pytest.mark.parametrize(("redacted", "shown"), [(["digits"], "***"), ([], "4217")])
async def test_the_values_of_private_slot_types_are_kept_out_of_the_logs(
    telemetry: tuple[Telemetry, InMemorySpanExporter],
    json_logs: io.StringIO,
    redacted: list[str],
    shown: str,
) -> None:
    settings = Settings(telemetry=TelemetrySettings(redact_slot_types=redacted))
    app = traced_app(SPEECH, telemetry[0], settings=settings)
    agent_log = logging.getLogger("opusagent.agent.fsa.agent")
    tool_log = ToolLog()
    agent_log.addFilter(tool_log)
    try:
        async with serving(app) as url, dial(BrowserFarEnd(16000), f"{url}/browser") as call:
            await say_i_lost_my_card(call)
            await call.dtmf("4217#")
            await until(lambda: "verify" in states(call.heard), within=5)
    finally:
        agent_log.removeFilter(tool_log)

    lines = [json.loads(line) for line in json_logs.getvalue().splitlines()]
    [looked_up] = [line for line in lines if line["logger"] == "bank_tools"]
    assert looked_up["message"] == f"looked up the card ending {shown}"
    assert looked_up["call_id"] == call.far_end.call_id
