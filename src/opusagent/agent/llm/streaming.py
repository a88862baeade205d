"""One streamed answer from any SDK whose stream is an async iterable of events with `close()`.

Each wait (for the answer to start, then for each next event) may last the request's
`timeout_s`; `aclose`, from any task (a barge-in), closes the connection and ends the iteration
quietly (a server streaming an answer stops when its client goes). Text deltas are yielded as
they come; the time to the first token (of text or of a tool call) is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from opusagent.agent.llm.chat import (
    ChatRequest,
    ChatResult,
    ChatStream,
    LLMError,
    LLMTimeoutError,
)

E = TypeVar("E")
E_co = TypeVar("E_co", covariant=True)


class EventStream(AsyncIterable[E_co], Protocol[E_co]):
    async def close(self) -> None: ...


class DeltaStream(Generic[E]):
    """A `ChatStream` over an SDK's event stream.

    `start` opens the stream; `read` takes one event, notes what it tells into the result
    (usage, finish reason, pieces of tool calls) and returns its text ("" for a piece of a tool
    call, None for an event that carries neither: the first token is the first not None);
    `finish` completes
    the result once the events end (tool calls whole); `failure` words an SDK error.
    """

    def __init__(
        self,
        request: ChatRequest,
        start: Callable[[], Awaitable[EventStream[E]]],
        read: Callable[[E, ChatResult], str | None],
        finish: Callable[[ChatResult], None],
        failure: Callable[[Exception], str],
        timeout_errors: tuple[type[Exception], ...],
    ) -> None:
        self.result = ChatResult(model=request.model)
        self._request = request
        self._start = start
        self._read = read
        self._finish = finish
        self._failure = failure
        self._timeout_errors: tuple[type[Exception], ...] = (TimeoutError, *timeout_errors)
        self._events: EventStream[E] | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncGenerator[str, None]:
        timeout = self._request.timeout_s
        started = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                self._events = await self._start()
            if self._closed:
                return
            events = aiter(self._events)
            while True:
                async with asyncio.timeout(timeout):
                    event = await anext(events, None)
                if event is None:
                    self._finish(self.result)
                    break
                text = self._read(event, self.result)
                if text is not None and self.result.ttft_s is None:
                    self.result.ttft_s = time.perf_counter() - started
                if text:
                    self.result.text += text
                    yield text
        except self._timeout_errors:
            if not self._closed:
                raise timed_out(self._request) from None
        except LLMError:
            raise
        except Exception as exc:
            if not self._closed:  # closing from another task breaks the read: that is the point
                raise LLMError(self._failure(exc)) from None
        finally:
            self.result.total_s = time.perf_counter() - started
            if self._events is not None:
                await self._events.close()

    async def aclose(self) -> None:
        self._closed = True
        if self._events is not None:
            await self._events.close()


def timed_out(request: ChatRequest) -> LLMTimeoutError:
    return LLMTimeoutError(f"model {request.model}: no answer within {request.timeout_s:g} s")


async def drain(stream: ChatStream) -> ChatResult:
    """The whole answer of a stream (its text, its tool calls)."""
    async with contextlib.aclosing(aiter(stream)) as deltas:
        async for _ in deltas:
            pass
    return stream.result
