"""Model routing: which model answers a state's request this turn, and which ones stand in.

The agent file names models (`llm.model`, `llm.routes`, `llm.fallback`, per state or for the
whole agent); the server's settings say what those names are at the endpoint (`default` is
`llm_model`, `llm_models` maps the others, unmapped names are sent as they are). A request goes
to the chosen model; if it fails or times out before answering, the fallbacks are tried in order.
Every choice, and every model that failed, is written into the turn's audit (`LLMCallRecord`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass

from opusagent.agent.fsa.audit import LLMCallRecord
from opusagent.agent.fsa.spec import AgentSpec, LLMRole, LLMSpec
from opusagent.agent.fsa.templates import AgentTemplateError, evaluate
from opusagent.agent.llm.chat import ChatClient, ChatRequest, ChatResult, ChatStream, LLMError
from opusagent.agent.llm.streaming import drain

DEFAULT_MODEL = "default"

BuildRequest = Callable[[str], ChatRequest]
"""The request for one endpoint model name."""


@dataclass(frozen=True, slots=True)
class Route:
    """The models to ask, in order, and why the first was chosen."""

    role: LLMRole
    spec: LLMSpec
    models: tuple[str, ...]
    reason: str


class ModelRouter:
    """Routes the requests of every agent of a process to one endpoint's models."""

    def __init__(
        self,
        client: ChatClient,
        *,
        default_model: str,
        aliases: Mapping[str, str] | None = None,
    ) -> None:
        self.client = client
        self._default = default_model
        self._aliases = dict(aliases or {})

    def route(
        self,
        spec: AgentSpec,
        state_name: str,
        role: LLMRole,
        variables: Mapping[str, object],
    ) -> Route | None:
        """The models for `role` in `state_name`; None when the state uses no LLM."""
        state_llm = spec.states[state_name].llm
        llm = state_llm or spec.llm
        if llm is None:
            return None
        where = f"states.{state_name}.llm" if state_llm is not None else "llm"
        model, reason = llm.model, where
        for index, route in enumerate(llm.routes):
            if route.role not in (None, role):
                continue
            if route.when is not None and not _holds(route.when, variables):
                continue
            model, reason = route.model, f"{where}.routes[{index}]"
            break
        fallbacks = tuple(name for name in llm.fallback if name != model)
        return Route(role, llm, (model, *fallbacks), reason)

    def endpoint_model(self, name: str) -> str:
        if name == DEFAULT_MODEL:
            return self._aliases.get(name, self._default)
        return self._aliases.get(name, name)

    async def complete(self, route: Route, build: BuildRequest) -> tuple[ChatResult, LLMCallRecord]:
        """The first whole answer among the route's models (`RouteFailedError` when none
        answers). Streamed, so that a request given up on stops at the server too."""
        record = LLMCallRecord(role=route.role, route=route.reason)
        started = time.perf_counter()
        for index, name in enumerate(route.models):
            _begin(record, route, index, name, self.endpoint_model(name))
            attempt = time.perf_counter()
            stream = self.client.stream(build(record.endpoint_model))
            try:
                result = await drain(stream)
            except LLMError as exc:
                record.failed.append(f"{name}: {exc}")
                continue
            finally:
                _finish(record, stream.result, started, attempt)
            return result, record
        record.error = "no model answered"
        raise RouteFailedError(record)

    def stream(self, route: Route, build: BuildRequest) -> RoutedStream:
        return RoutedStream(self, route, build)


class RouteFailedError(LLMError):
    """Every model of a route failed; `record` says how."""

    def __init__(self, record: LLMCallRecord) -> None:
        super().__init__("; ".join(record.failed) or record.error)
        self.record = record


class RoutedStream:
    """A streamed answer from the first model of a route that starts answering.

    Once text has come from a model there is no going back (the caller may have heard it): a
    failure after that ends the stream with `record.error` set.
    """

    def __init__(self, router: ModelRouter, route: Route, build: BuildRequest) -> None:
        self.record = LLMCallRecord(role=route.role, route=route.reason)
        self._router = router
        self._route = route
        self._build = build
        self._current: ChatStream | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncGenerator[str, None]:
        record = self.record
        started = time.perf_counter()
        for index, name in enumerate(self._route.models):
            if self._closed:
                return
            _begin(record, self._route, index, name, self._router.endpoint_model(name))
            attempt = time.perf_counter()
            stream = self._router.client.stream(self._build(record.endpoint_model))
            self._current = stream
            try:
                async with contextlib.aclosing(aiter(stream)) as deltas:
                    async for delta in deltas:
                        yield delta
            except LLMError as exc:
                if not stream.result.text:
                    record.failed.append(f"{name}: {exc}")
                    continue
                record.error = str(exc)
            finally:  # also when the consumer stops (a barge-in)
                _finish(record, stream.result, started, attempt)
            return
        record.error = "no model answered"
        raise RouteFailedError(record)

    async def aclose(self) -> None:
        """Stop now (a barge-in), from any task."""
        self._closed = True
        if self._current is not None:
            await self._current.aclose()


def _holds(expression: str, variables: Mapping[str, object]) -> bool:
    try:
        return bool(evaluate(expression, variables))
    except AgentTemplateError:
        return False  # lint reports expressions that do not parse; a failing one never routes


def _begin(record: LLMCallRecord, route: Route, index: int, name: str, endpoint: str) -> None:
    record.model = name
    record.endpoint_model = endpoint
    if index > 0:
        record.route = f"{route.reason}; fallback {name}"


def _finish(record: LLMCallRecord, result: ChatResult, started: float, attempt: float) -> None:
    """Times from the start of the routed request (failed models included): the first token
    (of the model that answered) and the end."""
    ttft = result.ttft_s
    record.ttft_ms = round((attempt - started + ttft) * 1000, 1) if ttft is not None else None
    record.total_ms = round((time.perf_counter() - started) * 1000, 1)
    if result.usage is not None:
        record.prompt_tokens = result.usage.prompt_tokens
        record.completion_tokens = result.usage.completion_tokens
