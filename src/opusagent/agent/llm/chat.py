"""What a chat model is asked and what it answers, whatever the provider behind it.

A `ChatClient` either completes a request (the whole answer: text and tool calls, parallel ones
included) or streams it (text deltas as they come). Both record usage and latency; a stream
also records the time to its first token.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is its arguments' JSON Schema."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    """The endpoint's model (or Azure deployment) name."""
    messages: Sequence[Message]
    tools: Sequence[Tool] = ()
    tool_choice: str | None = None
    """None or "auto": the model chooses; "none": no tool; a tool's name: that tool, always."""
    max_tokens: int = 256
    temperature: float = 0.0
    timeout_s: float = 10.0
    """The longest the whole request may take, retries included."""


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class ChatResult:
    """A whole answer, or what a stream delivered once it ended."""

    model: str
    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    """None when the endpoint did not report it."""
    ttft_s: float | None = None
    """Request sent → first token (streams only)."""
    total_s: float = 0.0
    finish_reason: str | None = None


class LLMError(Exception):
    """A request failed: the endpoint refused it, broke off, or answered nonsense."""


class LLMTimeoutError(LLMError):
    """A request took longer than its `timeout_s`."""


class ChatStream(Protocol):
    """Text deltas of one answer; `result` is complete once the iteration ends."""

    result: ChatResult

    def __aiter__(self) -> AsyncGenerator[str, None]: ...

    async def aclose(self) -> None:
        """Stop the answer now (a barge-in): the connection is closed, the iteration ends."""


class ChatClient(Protocol):
    """One endpoint; shared by every call of a process (requests are independent)."""

    async def complete(self, request: ChatRequest) -> ChatResult: ...

    def stream(self, request: ChatRequest) -> ChatStream: ...

    async def aclose(self) -> None: ...
