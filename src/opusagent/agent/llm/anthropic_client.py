"""A `ChatClient` for Anthropic's Messages API over the official `anthropic` SDK (the
`anthropic` extra; imported only when `llm_provider` is anthropic).

Facts from the Messages API reference (docs.anthropic.com/en/api/messages): the system prompt
is the `system` parameter, not a message; `max_tokens` is required; tools have an
`input_schema`; `tool_choice` is `{"type": "auto" | "any" | "none"}` or
`{"type": "tool", "name": …}`; tool calls come back as `tool_use` content blocks (`id`, `name`,
`input`); streams send `content_block_delta` events with `text_delta`s, `message_start` with the
input tokens and `message_delta` with the output tokens. The SDK retries 429/5xx with backoff.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from typing import Any

import anthropic
from anthropic.types import Message as AnthropicMessage
from anthropic.types import RawMessageStreamEvent

from opusagent.agent.llm.chat import ChatRequest, ChatResult, LLMError, ToolCall, Usage
from opusagent.agent.llm.streaming import DeltaStream, timed_out


class AnthropicChat:
    def __init__(self, client: anthropic.AsyncAnthropic) -> None:
        self._client = client

    async def complete(self, request: ChatRequest) -> ChatResult:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(request.timeout_s):
                message: AnthropicMessage = await self._client.messages.create(
                    **_parameters(request), timeout=request.timeout_s
                )
        except (TimeoutError, anthropic.APITimeoutError):
            raise timed_out(request) from None
        except anthropic.AnthropicError as exc:
            raise LLMError(_failed(request, exc)) from None
        result = ChatResult(
            model=request.model,
            usage=Usage(message.usage.input_tokens, message.usage.output_tokens),
            total_s=time.perf_counter() - started,
            finish_reason=message.stop_reason,
        )
        for block in message.content:
            if block.type == "text":
                result.text += block.text
            elif block.type == "tool_use" and isinstance(block.input, dict):
                result.tool_calls.append(ToolCall(block.id, block.name, block.input))
        return result

    def stream(self, request: ChatRequest) -> DeltaStream[RawMessageStreamEvent]:
        async def start() -> anthropic.AsyncStream[RawMessageStreamEvent]:
            events: anthropic.AsyncStream[
                RawMessageStreamEvent
            ] = await self._client.messages.create(
                **_parameters(request), stream=True, timeout=request.timeout_s
            )
            return events

        events = _StreamedEvents(request)
        return DeltaStream(
            request,
            start,
            events.read,
            events.finish,
            functools.partial(_failed, request),
            (anthropic.APITimeoutError,),
        )

    async def aclose(self) -> None:
        await self._client.close()


def _parameters(request: ChatRequest) -> dict[str, Any]:
    system = "\n\n".join(m.content for m in request.messages if m.role == "system")
    parameters: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "messages": [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ],
    }
    if system:
        parameters["system"] = system
    if request.tools:
        parameters["tools"] = [
            {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
            for t in request.tools
        ]
        choice = request.tool_choice
        if choice in (None, "auto", "none"):
            parameters["tool_choice"] = {"type": choice or "auto"}
        else:
            parameters["tool_choice"] = {"type": "tool", "name": choice}
    return parameters


class _StreamedEvents:
    """Reads a stream's events: text deltas, usage, and `tool_use` blocks whose input comes as
    `input_json_delta` fragments, parsed once the stream ends."""

    def __init__(self, request: ChatRequest) -> None:
        self._request = request
        self._calls: dict[int, list[str]] = {}
        """content block index → [id, name, input JSON so far]"""

    def read(self, event: RawMessageStreamEvent, result: ChatResult) -> str | None:
        if event.type == "message_start":
            result.usage = Usage(prompt_tokens=event.message.usage.input_tokens)
        elif event.type == "message_delta":
            prompt = result.usage.prompt_tokens if result.usage else 0
            result.usage = Usage(prompt, event.usage.output_tokens)
            result.finish_reason = event.delta.stop_reason
        elif event.type == "content_block_start" and event.content_block.type == "tool_use":
            self._calls[event.index] = [event.content_block.id, event.content_block.name, ""]
        elif event.type == "content_block_delta":
            if event.delta.type == "text_delta":
                return event.delta.text
            if event.delta.type == "input_json_delta" and event.index in self._calls:
                self._calls[event.index][2] += event.delta.partial_json
                return ""
        return None

    def finish(self, result: ChatResult) -> None:
        calls = []
        for _, (call_id, name, raw) in sorted(self._calls.items()):
            try:
                arguments = json.loads(raw or "{}")
            except json.JSONDecodeError as exc:
                raise LLMError(
                    f"model {self._request.model}: tool input is not JSON ({exc.msg})"
                ) from None
            calls.append(ToolCall(call_id, name, arguments))
        result.tool_calls = calls


def _failed(request: ChatRequest, exc: Exception) -> str:
    if isinstance(exc, anthropic.APIStatusError):
        return f"model {request.model}: HTTP {exc.status_code}: {exc.message}"
    return f"model {request.model}: {type(exc).__name__}: {exc}"
