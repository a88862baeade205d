"""A `ChatClient` for any OpenAI-compatible chat-completions endpoint, over the official SDK.

OpenAI, Azure OpenAI (`AsyncAzureOpenAI`: the model is the deployment name), vLLM, llama.cpp,
Ollama… The SDK retries 429s, 5xx answers and broken connections with exponential backoff
(honouring `retry-after`) up to its `max_retries`; every request also has a deadline of its own
(`ChatRequest.timeout_s`), after which it is abandoned whatever the retries. Parallel tool calls
come in one answer (`complete`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Mapping
from typing import Any

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.completion_usage import CompletionUsage

from opusagent.agent.llm.chat import ChatRequest, ChatResult, LLMError, ToolCall, Usage
from opusagent.agent.llm.streaming import DeltaStream, timed_out


class OpenAIChat:
    """Chat completions from one endpoint; `client` is an `AsyncOpenAI` or `AsyncAzureOpenAI`."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    async def complete(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(request.timeout_s):
                response = await self._client.chat.completions.create(
                    **_parameters(request), stream=False, timeout=request.timeout_s
                )
        except (TimeoutError, openai.APITimeoutError):
            raise timed_out(request) from None
        except openai.OpenAIError as exc:
            raise LLMError(_failed(request, exc)) from None
        return _result(request, response, time.perf_counter() - started)

    def stream(self, request: ChatRequest) -> DeltaStream[ChatCompletionChunk]:
        async def start() -> openai.AsyncStream[ChatCompletionChunk]:
            chunks: openai.AsyncStream[
                ChatCompletionChunk
            ] = await self._client.chat.completions.create(
                **_parameters(request), stream=True, timeout=request.timeout_s
            )
            return chunks

        calls = _StreamedToolCalls(request)
        return DeltaStream(
            request,
            start,
            calls.read,
            calls.finish,
            functools.partial(_failed, request),
            (openai.APITimeoutError,),
        )

    async def aclose(self) -> None:
        await self._client.close()


def _parameters(request: ChatRequest) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "model": request.model,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.tools:
        parameters["tools"] = [
            {
                "type": "function",
                "function": {
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                },
            }
            for tool in request.tools
        ]
        choice = request.tool_choice
        if choice in ("auto", "none"):
            parameters["tool_choice"] = choice
        elif choice is not None:
            parameters["tool_choice"] = {"type": "function", "function": {"name": choice}}
    return parameters


def _result(request: ChatRequest, response: ChatCompletion, elapsed: float) -> ChatResult:
    if not response.choices:
        raise LLMError(f"model {request.model}: the answer has no choices")
    choice = response.choices[0]
    calls = [
        ToolCall(call.id, call.function.name, _arguments(request, call.function.arguments))
        for call in choice.message.tool_calls or ()
        if call.type == "function"
    ]
    return ChatResult(
        model=request.model,
        text=choice.message.content or "",
        tool_calls=calls,
        usage=_usage(response.usage) if response.usage is not None else None,
        total_s=elapsed,
        finish_reason=choice.finish_reason,
    )


def _arguments(request: ChatRequest, raw: str) -> Mapping[str, Any]:
    try:
        value = json.loads(raw or "{}")
    except json.JSONDecodeError as exc:
        raise LLMError(
            f"model {request.model}: tool arguments are not JSON ({exc.msg}): {raw[:200]!r}"
        ) from None
    if not isinstance(value, dict):
        raise LLMError(f"model {request.model}: tool arguments are not an object: {raw[:200]!r}")
    return value


def _usage(usage: CompletionUsage) -> Usage:
    return Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)


class _StreamedToolCalls:
    """Reads a stream's chunks: text, and tool calls whose pieces come by index (id and name
    first, then the arguments' JSON in fragments), parsed once the stream ends."""

    def __init__(self, request: ChatRequest) -> None:
        self._request = request
        self._calls: dict[int, list[str]] = {}
        """index → [id, name, arguments so far]"""

    def read(self, chunk: ChatCompletionChunk, result: ChatResult) -> str | None:
        if chunk.usage is not None:
            result.usage = _usage(chunk.usage)
        text: str | None = None
        for choice in chunk.choices:
            result.finish_reason = choice.finish_reason or result.finish_reason
            if choice.delta.content:
                text = (text or "") + choice.delta.content
            for piece in choice.delta.tool_calls or ():
                text = text or ""
                call = self._calls.setdefault(piece.index, ["", "", ""])
                call[0] = piece.id or call[0]
                if piece.function is not None:
                    call[1] = piece.function.name or call[1]
                    call[2] += piece.function.arguments or ""
        return text

    def finish(self, result: ChatResult) -> None:
        result.tool_calls = [
            ToolCall(call_id, name, _arguments(self._request, arguments))
            for _, (call_id, name, arguments) in sorted(self._calls.items())
        ]


def _failed(request: ChatRequest, exc: Exception) -> str:
    if isinstance(exc, openai.APIStatusError):
        return f"model {request.model}: HTTP {exc.status_code}: {exc.message}"
    return f"model {request.model}: {type(exc).__name__}: {exc}"
