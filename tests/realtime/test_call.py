"""A realtime call against the Realtime test server on loopback (no speech models): the
session it configures, a state's instructions and tools, function calls, reconnects."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bridges.loopback import until
from opusagent.audio.formats import MULAW_8K, AudioChunk
from opusagent.call.events import AgentAudio, AgentText, CallerAudio, ReplyAudioEnd
from opusagent.realtime.events import assistant_text
from opusagent.testing.realtime_server import RealtimeTestServer, ReplayStep

from .helpers import BANK, HOURS, Bridge, new_agent, realtime_call

WELCOME = (
    "Thank you for calling Opus Bank. I can block a lost or stolen card and send you a new "
    "one. How can I help you today?"
)
IDENTIFY = "I can help with that. Please say or key in the last four digits of your card."
SILENCE = CallerAudio(AudioChunk(b"\xff" * 160, MULAW_8K))
CALLER_SAYS = [
    {"type": "input_audio_buffer.speech_started", "audio_start_ms": 100, "item_id": "item_u1"},
    {"type": "input_audio_buffer.speech_stopped", "audio_end_ms": 900, "item_id": "item_u1"},
    {
        "type": "conversation.item.input_audio_transcription.completed",
        "item_id": "item_u1",
        "content_index": 0,
        "transcript": "I lost my card",
    },
]


def state_updates(server: RealtimeTestServer) -> list[dict[str, Any]]:
    return [
        e["session"] for e in server.received("session.update") if "instructions" in e["session"]
    ]


async def test_the_session_takes_the_bridges_g711_and_leaves_responses_to_the_call() -> None:
    async with RealtimeTestServer() as server:
        call = realtime_call(server.url, new_agent(BANK), Bridge())
        await call.start()
        await until(lambda: bool(server.received("response.create")))
        await call.aclose()

    first = server.received()[0]
    assert first["type"] == "session.update"
    audio = first["session"]["audio"]
    assert audio["input"]["format"] == {"type": "audio/pcmu"}
    assert audio["output"] == {"format": {"type": "audio/pcmu"}, "voice": "alloy"}
    assert audio["input"]["turn_detection"]["create_response"] is False
    assert audio["input"]["turn_detection"]["interrupt_response"] is True
    assert first["session"]["model"] == "gpt-realtime"
    assert server.connections[0].headers["authorization"] == "Bearer sk-test"
    assert server.connections[0].path == "/v1/realtime?model=gpt-realtime"


async def test_each_state_sets_the_models_instructions_and_tools_before_it_speaks() -> None:
    replay = [ReplayStep("input_audio_buffer.append", CALLER_SAYS)]
    bridge = Bridge()
    async with RealtimeTestServer(replay=replay) as server:
        call = realtime_call(server.url, new_agent(BANK), bridge)
        await call.start()
        await until(lambda: bool(bridge.of(ReplyAudioEnd)))
        call.handle(SILENCE)
        await until(lambda: len(server.received("response.create")) == 2)
        await call.aclose()

    welcome, identify = state_updates(server)
    assert welcome["instructions"].endswith(f"Say: {WELCOME}")
    assert identify["instructions"].endswith(f"Say: {IDENTIFY}")
    assert identify["tools"] == []
    assert identify["audio"]["input"]["transcription"]["prompt"].startswith("<digits:4>, agent")
    kinds = [e["type"] for e in server.received() if e["type"] != "input_audio_buffer.append"]
    assert kinds[-2:] == ["session.update", "response.create"]
    assert [t.text for t in call.turns] == ["", "I lost my card"]


async def test_a_function_call_is_answered_with_its_output_and_a_new_response() -> None:
    agent = new_agent(HOURS)
    bridge = Bridge()
    async with RealtimeTestServer() as server:
        call = realtime_call(server.url, agent, bridge)
        await call.start()
        await until(lambda: bool(bridge.of(ReplyAudioEnd)))
        await call.aclose()

    [called] = [
        e["item"]
        for e in server.sent("response.output_item.added")
        if e["item"]["type"] == "function_call"
    ]
    assert called["name"] == "opening_hours"
    [answer] = server.received("conversation.item.create")
    expected = {"day": "saturday", "open": "09:00", "close": "13:00"}
    assert answer["item"] == {
        "type": "function_call_output",
        "call_id": called["call_id"],
        "output": json.dumps(expected),
    }
    kinds = [e["type"] for e in server.received()]
    assert kinds.count("response.create") == 2
    assert kinds.index("conversation.item.create") < len(kinds) - 1 - kinds[::-1].index(
        "response.create"
    )
    [record] = agent.state.audit[0].tool_calls
    assert (record.name, record.args, record.result) == (
        "opening_hours",
        {"day": "saturday"},
        expected,
    )
    spoken = "".join(o.text for o in bridge.of(AgentText))
    assert spoken == "Welcome to Opus Bank. Our branch opens at nine on Saturdays."


async def test_a_session_the_server_ends_is_reconnected_with_the_calls_context() -> None:
    bridge = Bridge()
    async with RealtimeTestServer(max_session_s=0.5) as server:
        call = realtime_call(server.url, new_agent(BANK), bridge)
        await call.start()
        await until(lambda: len(server.sessions) >= 2 and len(server.sessions[1].received) >= 3)
        call.handle(SILENCE)
        await until(lambda: len(server.sessions[1].received) >= 4)
        await call.aclose()

    assert call.reconnects >= 1
    assert not call.end_reason or call.end_reason == "closed"
    expired = server.sessions[0].sent[-1]
    assert expired["type"] == "error" and expired["error"]["code"] == "session_expired"
    again = server.sessions[1].received
    assert again[0]["type"] == "session.update"
    assert again[0]["session"]["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert again[1] == {"type": "conversation.item.create", "item": assistant_text(WELCOME)}
    assert again[2]["session"]["instructions"].endswith(f"Say: {WELCOME}")
    assert again[3]["type"] == "input_audio_buffer.append"


def beta_reply(audio_s: float) -> list[dict[str, object]]:
    """A recorded beta-interface response: its audio as `response.audio.delta` in three pieces."""
    where = {"response_id": "resp_b1", "item_id": "item_b1", "output_index": 0}
    piece = base64.b64encode(b"\x7f" * round(audio_s / 3 * 8000)).decode()
    item = {"id": "item_b1", "type": "message", "role": "assistant", "content": []}
    return [
        {"type": "response.created", "response": {"id": "resp_b1", "status": "in_progress"}},
        {"type": "response.output_item.added", **where, "item": item},
        {"type": "conversation.item.created", "item": item},
        {"type": "response.audio_transcript.delta", **where, "content_index": 0, "delta": "Hi."},
        *({"type": "response.audio.delta", **where, "content_index": 0, "delta": piece},) * 3,
        {"type": "response.audio.done", **where, "content_index": 0},
        {"type": "response.done", "response": {"id": "resp_b1", "status": "completed"}},
    ]


async def test_a_recorded_beta_response_plays_to_the_bridge() -> None:
    bridge = Bridge()
    replay = [ReplayStep("response.create", beta_reply(0.3))]
    async with RealtimeTestServer(replay=replay) as server:
        call = realtime_call(server.url, new_agent(BANK), bridge)
        await call.start()
        await until(lambda: bool(bridge.of(ReplyAudioEnd)))
        await call.aclose()

    frames = [o.chunk for o in bridge.of(AgentAudio)]
    assert sum(f.duration for f in frames) == pytest.approx(0.3)
    assert {f.format for f in frames} == {MULAW_8K}
    assert [o.text for o in bridge.of(AgentText)] == ["Hi."]
    assert [e.text for e in call.history] == ["Hi."]
