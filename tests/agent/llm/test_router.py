"""Model routing: per state and per turn by the agent file's rules, endpoint names from the
settings, and the fallback to the next model when one times out — all on the audit record."""

from __future__ import annotations

from typing import Any

import pytest
from openai import AsyncOpenAI

from opusagent.agent.fsa.spec import AgentSpec
from opusagent.agent.llm.chat import ChatRequest, Message
from opusagent.agent.llm.openai_client import OpenAIChat
from opusagent.agent.llm.router import ModelRouter, RouteFailedError

from .scripted_server import Answer, scripted

AGENT = AgentSpec.model_validate(
    {
        "name": "shop",
        "initial": "ask",
        "llm": {"model": "smart", "fallback": ["fast", "smart"], "timeout_s": 0.5},
        "states": {
            "ask": {
                "say": "What would you like?",
                "llm": {
                    "model": "smart",
                    "fallback": ["fast"],
                    "timeout_s": 0.5,
                    "routes": [
                        {"model": "fast", "role": "phrase"},
                        {"model": "tiny", "when": "retries > 1"},
                    ],
                },
                "transitions": [{"to": "done"}],
            },
            "done": {"say": "Bye.", "final": True},
        },
    }
)
HELLO = [Message("user", "Hello")]


def router_for(url: str = "http://127.0.0.1:9/v1") -> ModelRouter:
    client = OpenAIChat(AsyncOpenAI(base_url=url, api_key="test", max_retries=0))
    return ModelRouter(client, default_model="gpt-x", aliases={"smart": "gpt-big"})


def build(model: str) -> ChatRequest:
    return ChatRequest(model, HELLO, timeout_s=0.5)


def test_a_state_s_own_llm_is_routed_with_its_fallbacks() -> None:
    route = router_for().route(AGENT, "ask", "propose", {"retries": 0})

    assert route is not None
    assert route.models == ("smart", "fast")
    assert route.reason == "states.ask.llm"


def test_a_route_matches_by_role_then_by_condition_first_wins() -> None:
    router = router_for()
    phrase = router.route(AGENT, "ask", "phrase", {"retries": 5})
    retried = router.route(AGENT, "ask", "propose", {"retries": 2})

    assert phrase is not None and phrase.models == ("fast",)
    assert phrase.reason == "states.ask.llm.routes[0]"
    assert retried is not None and retried.models == ("tiny", "fast")
    assert retried.reason == "states.ask.llm.routes[1]"


def test_a_state_without_its_own_llm_uses_the_agent_s() -> None:
    route = router_for().route(AGENT, "done", "phrase", {})

    assert route is not None and route.models == ("smart", "fast")
    assert route.reason == "llm"


def test_agent_file_names_map_to_endpoint_models() -> None:
    router = router_for()

    assert router.endpoint_model("default") == "gpt-x"
    assert router.endpoint_model("smart") == "gpt-big"
    assert router.endpoint_model("gpt-4o-mini") == "gpt-4o-mini"


def slow_big_model(body: Any, index: int) -> Answer:
    if body["model"] == "gpt-big":
        return Answer(text="too late", delay_s=2)
    return Answer(tool_calls=[("propose", {"to": "done"})], text="")


async def test_a_timed_out_model_falls_back_to_the_next_and_the_record_says_so() -> None:
    async with scripted(slow_big_model) as (server, url):
        router = router_for(url)
        route = router.route(AGENT, "ask", "propose", {"retries": 0})
        assert route is not None
        result, record = await router.complete(route, build)
        await router.client.aclose()

    assert [seen.body["model"] for seen in server.seen] == ["gpt-big", "fast"]
    assert result.tool_calls[0].arguments == {"to": "done"}
    assert record.model == "fast"
    assert record.endpoint_model == "fast"
    assert record.route == "states.ask.llm; fallback fast"
    assert record.failed == ["smart: model gpt-big: no answer within 0.5 s"]
    assert record.ttft_ms is not None and record.ttft_ms > 500
    assert record.total_ms >= record.ttft_ms


async def test_a_streamed_answer_falls_back_before_its_first_token() -> None:
    async with scripted(lambda body, index: slow_big_model(body, index)) as (_server, url):
        router = router_for(url)
        route = router.route(AGENT, "ask", "propose", {"retries": 0})
        assert route is not None
        stream = router.stream(route, lambda model: ChatRequest(model, HELLO, timeout_s=0.5))
        async for _ in stream:
            pass
        await router.client.aclose()

    assert stream.record.model == "fast"
    assert stream.record.failed == ["smart: model gpt-big: no answer within 0.5 s"]


async def test_when_every_model_fails_the_record_keeps_each_failure() -> None:
    async with scripted(lambda body, index: Answer(status=500)) as (_server, url):
        router = router_for(url)
        route = router.route(AGENT, "ask", "propose", {"retries": 0})
        assert route is not None
        with pytest.raises(RouteFailedError) as failed:
            await router.complete(route, build)
        await router.client.aclose()

    record = failed.value.record
    assert record.error == "no model answered"
    assert [line.split(":")[0] for line in record.failed] == ["smart", "fast"]
    assert all("HTTP 500" in line for line in record.failed)
