"""The Realtime test server's protocol: errors for malformed events, responses, truncation,
and what its model says."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from opusagent.testing.realtime_server import CallTool, RealtimeTestServer, Speak, model_turn


async def next_of(ws: ClientConnection, kind: str) -> dict[str, Any]:
    while True:
        event: dict[str, Any] = json.loads(await ws.recv())
        if event["type"] == kind:
            return event


async def test_malformed_client_events_get_errors_and_the_session_goes_on() -> None:
    async with RealtimeTestServer() as server, connect(f"{server.url}?model=m") as ws:
        created = json.loads(await ws.recv())
        await ws.send("not json")
        await ws.send('{"type": "nope", "event_id": "e1"}')
        flat = {"type": "realtime", "input_audio_format": "g711_ulaw"}
        await ws.send(json.dumps({"type": "session.update", "event_id": "e2", "session": flat}))
        await ws.send(json.dumps({"type": "session.update", "session": {"type": "realtime"}}))
        replies = [json.loads(await ws.recv()) for _ in range(4)]

    assert created["type"] == "session.created" and created["session"]["model"] == "m"
    assert [r["type"] for r in replies] == ["error", "error", "error", "session.updated"]
    assert "not JSON" in replies[0]["error"]["message"]
    assert replies[1]["error"]["event_id"] == "e1"
    assert "'nope' is not a supported client event type" in replies[1]["error"]["message"]
    assert "session.input_audio_format: Unknown parameter" in replies[2]["error"]["message"]


async def test_a_second_response_while_one_is_active_is_refused() -> None:
    async with RealtimeTestServer() as server, connect(server.url) as ws:
        await ws.send('{"type": "response.create"}')
        await ws.send('{"type": "response.create", "event_id": "e9"}')
        error = await next_of(ws, "error")
        done = await next_of(ws, "response.done")

    assert error["error"]["code"] == "conversation_already_has_active_response"
    assert error["error"]["event_id"] == "e9"
    assert done["response"]["status"] == "completed"


async def test_truncating_past_the_audio_sent_is_an_error() -> None:
    say = {"type": "session.update", "session": {"type": "realtime", "instructions": "Say: Hi."}}
    async with RealtimeTestServer() as server, connect(server.url) as ws:
        await ws.send(json.dumps(say))
        await ws.send('{"type": "response.create"}')
        done = await next_of(ws, "response.done")
        item_id = done["response"]["output"][0]["id"]
        truncate = {"type": "conversation.item.truncate", "item_id": item_id, "content_index": 0}
        await ws.send(json.dumps({**truncate, "audio_end_ms": 500}))
        error = await next_of(ws, "error")
        await ws.send(json.dumps({**truncate, "audio_end_ms": 0}))
        truncated = await next_of(ws, "conversation.item.truncated")

    assert done["response"]["output"][0]["content"][0]["transcript"] == "Hi."
    assert "audio_end_ms 500 is longer than the audio (0 ms)" in error["error"]["message"]
    assert (truncated["item_id"], truncated["audio_end_ms"]) == (item_id, 0)


def test_the_model_speaks_its_last_say_line() -> None:
    assert model_turn("Be kind.\nSay: Hello there.", [], []) == Speak("Hello there.")
    assert model_turn("Just this.", [], []) == Speak("Just this.")


def test_the_model_calls_an_offered_tool_once_per_caller_turn() -> None:
    instructions = 'Call: hours {"day": "monday"}\nSay: Open at nine.'
    called = {"type": "function_call", "name": "hours", "call_id": "c1"}
    user = {"type": "message", "role": "user"}

    assert model_turn(instructions, ["hours"], []) == CallTool("hours", '{"day": "monday"}')
    assert model_turn(instructions, [], []) == Speak("Open at nine.")
    assert model_turn(instructions, ["hours"], [user, called]) == Speak("Open at nine.")
    assert model_turn(instructions, ["hours"], [called, user]) == CallTool(
        "hours", '{"day": "monday"}'
    )
