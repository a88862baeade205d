"""A tiny chat-completions server on loopback whose answers a test scripts: refusals (429,
5xx), slow starts, streamed text and streamed (parallel) tool calls, in the shapes of the
OpenAI chat-completions API reference (chunks `chat.completion.chunk`, tool calls in pieces by
`index`, `data: [DONE]` last). For what the llama.cpp server cannot be made to do on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from bridges.loopback import serving


@dataclass(frozen=True)
class Answer:
    status: int = 200
    text: str = ""
    tool_calls: Sequence[tuple[str, Mapping[str, Any]]] = ()
    delay_s: float = 0.0
    """Before the answer starts."""


@dataclass(frozen=True)
class Seen:
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Mapping[str, Any]


Script = Callable[[Mapping[str, Any], int], Answer]
"""The answer to a request (its body, and how many requests came before it)."""


@dataclass
class ScriptedLLM:
    script: Script
    seen: list[Seen] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._answer, methods=["POST"]),
                Route(
                    "/openai/deployments/{deployment}/chat/completions",
                    self._answer,
                    methods=["POST"],
                ),
            ]
        )

    async def _answer(self, request: Request) -> Response:
        body = await request.json()
        self.seen.append(Seen(request.url.path, dict(request.query_params), request.headers, body))
        answer = self.script(body, len(self.seen) - 1)
        await asyncio.sleep(answer.delay_s)
        if answer.status != 200:
            return JSONResponse(
                {"error": {"message": f"scripted {answer.status}", "type": "scripted"}},
                status_code=answer.status,
                headers={"retry-after-ms": "10"},
            )
        if body.get("stream"):
            return StreamingResponse(_events(body["model"], answer), media_type="text/event-stream")
        return JSONResponse(_completion(body["model"], answer))


def _chunk(model: str, delta: Mapping[str, Any], finish: str | None = None) -> str:
    chunk = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(chunk)}\n\n"


async def _events(model: str, answer: Answer) -> AsyncIterator[str]:
    yield _chunk(model, {"role": "assistant", "content": ""})
    for word in answer.text.split(" ") if answer.text else ():
        yield _chunk(model, {"content": word + " "})
        await asyncio.sleep(0.01)
    for index, (name, arguments) in enumerate(answer.tool_calls):
        head = {"index": index, "id": f"call_{index}", "type": "function"}
        yield _chunk(model, {"tool_calls": [{**head, "function": {"name": name, "arguments": ""}}]})
        raw = json.dumps(arguments)
        for start in range(0, len(raw), 5):
            piece = {"index": index, "function": {"arguments": raw[start : start + 5]}}
            yield _chunk(model, {"tool_calls": [piece]})
    finish = "tool_calls" if answer.tool_calls else "stop"
    yield _chunk(model, {}, finish)
    yield "data: [DONE]\n\n"


def _completion(model: str, answer: Answer) -> dict[str, Any]:
    calls = [
        {
            "id": f"call_{i}",
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        for i, (name, arguments) in enumerate(answer.tool_calls)
    ]
    message: dict[str, Any] = {"role": "assistant", "content": answer.text or None}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    }


@contextlib.asynccontextmanager
async def scripted(script: Script) -> AsyncIterator[tuple[ScriptedLLM, str]]:
    """A `ScriptedLLM` served on loopback, and its base URL (`http://127.0.0.1:<port>/v1`)."""
    server = ScriptedLLM(script)
    async with serving(server.app) as url:
        yield server, url.replace("ws://", "http://") + "/v1"
