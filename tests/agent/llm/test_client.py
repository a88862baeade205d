"""The chat client over the official SDK: streaming, tool calls, usage and time to first token
against the real llama.cpp server on loopback; retries, timeouts, parallel tool calls and the
Azure variant against a scripted loopback server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from openai import AsyncOpenAI

from opusagent.agent.llm.chat import ChatRequest, LLMError, LLMTimeoutError, Message, Tool
from opusagent.agent.llm.endpoint import chat_client
from opusagent.agent.llm.openai_client import OpenAIChat
from opusagent.agent.llm.streaming import drain
from opusagent.config import ConfigError, Settings

from .conftest import llama_settings
from .llama_server import MODEL
from .scripted_server import Answer, scripted

pytestmark = pytest.mark.slow

WEATHER = Tool(
    "get_weather",
    "The weather in a city.",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
HELLO = [Message("user", "Say hello to Ada in one short sentence.")]


def client_for(url: str, retries: int = 2) -> OpenAIChat:
    return OpenAIChat(AsyncOpenAI(base_url=url, api_key="test", max_retries=retries))


async def test_a_stream_yields_tokens_as_they_come_with_time_to_first_token(
    llama_url: str,
) -> None:
    client = client_for(llama_url)
    stream = client.stream(ChatRequest(MODEL, HELLO, max_tokens=24, timeout_s=60))
    deltas = [delta async for delta in stream]
    await client.aclose()

    assert len(deltas) > 3
    assert "".join(deltas) == stream.result.text
    assert stream.result.ttft_s is not None
    assert 0 < stream.result.ttft_s < stream.result.total_s


async def test_a_whole_answer_reports_usage(llama_url: str) -> None:
    client = client_for(llama_url)
    result = await client.complete(ChatRequest(MODEL, HELLO, max_tokens=16, timeout_s=60))
    await client.aclose()

    assert result.text
    assert result.usage is not None
    assert result.usage.prompt_tokens > 5
    assert 0 < result.usage.completion_tokens <= 16


async def test_a_named_tool_is_called_with_arguments_matching_its_schema(llama_url: str) -> None:
    client = client_for(llama_url)
    request = ChatRequest(
        MODEL,
        [Message("user", "What is the weather in Paris?")],
        tools=(WEATHER,),
        tool_choice="get_weather",
        max_tokens=40,
        timeout_s=60,
    )
    streamed = await drain(client.stream(request))
    whole = await client.complete(request)
    await client.aclose()

    for result in (streamed, whole):
        assert [call.name for call in result.tool_calls] == ["get_weather"]
        assert isinstance(result.tool_calls[0].arguments["city"], str)


async def test_closing_a_stream_from_another_task_stops_it_at_once(llama_url: str) -> None:
    client = client_for(llama_url)
    request = ChatRequest(
        MODEL, [Message("user", "Tell me a long story.")], max_tokens=400, timeout_s=60
    )
    stream = client.stream(request)
    first = asyncio.Event()
    received: list[str] = []

    async def read() -> None:
        async for delta in stream:
            received.append(delta)
            first.set()

    reader = asyncio.create_task(read())
    await asyncio.wait_for(first.wait(), 60)
    closed_at = time.perf_counter()
    await stream.aclose()
    await asyncio.wait_for(reader, 2)
    stopped_after = time.perf_counter() - closed_at
    await client.aclose()

    assert stopped_after < 1.0
    assert len(received) < 400


async def test_a_429_is_retried_with_backoff_then_answered() -> None:
    def script(body: Any, index: int) -> Answer:
        return Answer(status=429) if index == 0 else Answer(text="Hello there.")

    async with scripted(script) as (server, url):
        client = client_for(url)
        result = await drain(client.stream(ChatRequest("m", HELLO)))
        await client.aclose()

    assert result.text == "Hello there. "
    assert [seen.headers.get("x-stainless-retry-count") for seen in server.seen] == ["0", "1"]


async def test_a_5xx_is_retried_and_gives_up_after_the_retries() -> None:
    async with scripted(lambda body, index: Answer(status=503)) as (server, url):
        client = client_for(url, retries=2)
        with pytest.raises(LLMError, match="HTTP 503"):
            await drain(client.stream(ChatRequest("m", HELLO)))
        await client.aclose()

    assert len(server.seen) == 3


async def test_a_slow_answer_times_out() -> None:
    async with scripted(lambda body, index: Answer(text="late", delay_s=2)) as (_server, url):
        client = client_for(url, retries=0)
        started = time.perf_counter()
        with pytest.raises(LLMTimeoutError, match=r"no answer within 0\.3 s"):
            await drain(client.stream(ChatRequest("m", HELLO, timeout_s=0.3)))
        elapsed = time.perf_counter() - started
        await client.aclose()

    assert elapsed < 1.5


async def test_parallel_tool_calls_streamed_in_pieces_come_out_whole() -> None:
    calls = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Lyon"})]
    async with scripted(lambda body, index: Answer(tool_calls=calls)) as (server, url):
        client = client_for(url)
        request = ChatRequest("m", HELLO, tools=(WEATHER,), tool_choice="auto")
        streamed = await drain(client.stream(request))
        whole = await client.complete(request)
        await client.aclose()

    for result in (streamed, whole):
        assert [(c.id, c.name, dict(c.arguments)) for c in result.tool_calls] == [
            ("call_0", "get_weather", {"city": "Paris"}),
            ("call_1", "get_weather", {"city": "Lyon"}),
        ]
    assert server.seen[0].body["tool_choice"] == "auto"
    assert server.seen[0].body["tools"][0]["function"]["name"] == "get_weather"


async def test_the_azure_provider_calls_the_deployment_with_the_api_version() -> None:
    async with scripted(lambda body, index: Answer(text="Hi.")) as (server, url):
        settings = Settings(
            llm_base_url=url.removesuffix("/v1"),
            llm_provider="azure",
            llm_api_key="key",
            llm_api_version="2024-10-21",
            llm_model="my-deployment",
        )
        client = chat_client(settings, settings.llm_base_url or "")
        result = await drain(client.stream(ChatRequest("my-deployment", HELLO)))
        await client.aclose()

    assert result.text == "Hi. "
    seen = server.seen[0]
    assert seen.path == "/openai/deployments/my-deployment/chat/completions"
    assert seen.query["api-version"] == "2024-10-21"
    assert seen.headers["api-key"] == "key"


def test_azure_without_an_api_version_is_refused_by_name() -> None:
    settings = Settings(llm_base_url="https://x.example", llm_provider="azure", llm_model="d")
    with pytest.raises(ConfigError, match="OPUSAGENT_LLM_API_VERSION"):
        chat_client(settings, "https://x.example")


def test_no_base_url_means_no_llm_and_a_base_url_needs_a_model() -> None:
    from opusagent.agent.llm.endpoint import llm_from_settings

    assert llm_from_settings(Settings()) is None
    with pytest.raises(ConfigError, match="OPUSAGENT_LLM_MODEL"):
        llm_from_settings(Settings(llm_base_url="http://127.0.0.1:9/v1"))


def test_settings_come_from_the_flat_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from opusagent.config import load_settings

    monkeypatch.setenv("OPUSAGENT_LLM_BASE_URL", "http://127.0.0.1:8000/v1")
    monkeypatch.setenv("OPUSAGENT_LLM_API_KEY", "secret")
    monkeypatch.setenv("OPUSAGENT_LLM_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("OPUSAGENT_LLM_MODELS", '{"fast": "gpt-4o-mini"}')
    settings = load_settings()

    assert settings.llm_base_url == "http://127.0.0.1:8000/v1"
    assert settings.llm_api_key == "secret"
    assert settings.llm_model == "gpt-4o-mini"
    assert settings.llm_models == {"fast": "gpt-4o-mini"}
    assert llama_settings("x").llm_provider == "openai"
