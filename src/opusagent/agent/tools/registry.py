"""Registering tools and calling them with validated arguments and a timeout.

A tool is an async (or plain) function with typed parameters. Its parameters become a pydantic
model, which validates the arguments an agent file or an LLM passes and gives the JSON Schema an
LLM sees. A parameter annotated `ToolContext` receives the conversation's facts instead of an
argument. A tool may return an `AgentAction` (transfer, hang up, send digits) for the call to
perform in order with the agent's speech.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, get_type_hints

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from opusagent.bridges.twilio_rest import TwilioRest

ToolFunction = Callable[..., Any]
DEFAULT_TIMEOUT_S = 5.0


class ToolError(Exception):
    """A tool could not run: unknown, bad arguments, failed or timed out."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may know about the conversation it serves."""

    call_id: str
    slots: Mapping[str, Any]
    context: Mapping[str, Any]
    twilio: TwilioRest | None = None
    """The account's REST client, for `send_sms` (None: not configured)."""
    sms_from: str | None = None
    """The number texts are sent from when the call's own number is not known."""
    knowledge: Any = None
    """The agent's knowledge base, for `lookup`."""
    links: Any = None
    """Resume codes (`opusagent.sessions.links.Links`), for `resume_code` and `resume_session`."""
    sessions: Any = None
    """The session store (`opusagent.sessions.store.SessionStore`), for `resume_session`."""


@dataclass(frozen=True, slots=True)
class AdoptConversation:
    """A tool result that makes the agent carry on another conversation (its whole state): a
    caller presenting a resume code on a new call."""

    call_id: str
    state: Any
    """The `AgentState` to carry on."""


@dataclass(frozen=True)
class Tool:
    """A registered tool."""

    name: str
    function: ToolFunction
    description: str
    timeout_s: float
    arguments: type[BaseModel]
    context_parameter: str | None = None

    def schema(self) -> dict[str, Any]:
        """The OpenAI-style function description (`name`, `description`, `parameters`)."""
        parameters = self.arguments.model_json_schema()
        parameters.pop("title", None)
        return {"name": self.name, "description": self.description, "parameters": parameters}

    async def call(self, args: Mapping[str, Any], context: ToolContext) -> Any:
        try:
            validated = self.arguments.model_validate(dict(args))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(f"{self.name}: bad arguments: {problems}") from None
        kwargs = {name: getattr(validated, name) for name in type(validated).model_fields}
        if self.context_parameter is not None:
            kwargs[self.context_parameter] = context
        try:
            async with asyncio.timeout(self.timeout_s):
                result = self.function(**kwargs)
                if inspect.isawaitable(result):
                    result = await result
        except TimeoutError:
            raise ToolError(f"{self.name}: timed out after {self.timeout_s:g} s") from None
        except ToolError:
            raise
        except Exception as exc:
            raise ToolError(f"{self.name}: {type(exc).__name__}: {exc}") from exc
        return result


@dataclass
class ToolRegistry:
    """Tools by name."""

    tools: dict[str, Tool] = field(default_factory=dict)

    def register(
        self,
        function: ToolFunction,
        *,
        name: str | None = None,
        description: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> Tool:
        made = make_tool(function, name=name, description=description, timeout_s=timeout_s)
        if made.name in self.tools and self.tools[made.name].function is not function:
            raise ValueError(f"a tool named {made.name!r} is already registered")
        self.tools[made.name] = made
        return made

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def get(self, name: str) -> Tool:
        try:
            return self.tools[name]
        except KeyError:
            known = ", ".join(sorted(self.tools)) or "none"
            raise ToolError(f"unknown tool {name!r} (known: {known})") from None

    def merged(self, other: ToolRegistry) -> ToolRegistry:
        return ToolRegistry({**self.tools, **other.tools})


def make_tool(
    function: ToolFunction,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Tool:
    """A `Tool` from a typed function (parameters → pydantic model → JSON Schema)."""
    hints = get_type_hints(function)
    fields: dict[str, Any] = {}
    context_parameter = None
    for parameter in inspect.signature(function).parameters.values():
        annotation = hints.get(parameter.name, Any)
        if annotation is ToolContext:
            context_parameter = parameter.name
            continue
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ValueError(f"tool {function.__name__}: *args/**kwargs are not supported")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    tool_name = name or function.__name__
    arguments = create_model(
        f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields
    )
    doc = inspect.getdoc(function) or ""
    return Tool(
        name=tool_name,
        function=function,
        description=description or doc.split("\n\n")[0].replace("\n", " "),
        timeout_s=timeout_s,
        arguments=arguments,
        context_parameter=context_parameter,
    )


def tool(
    function: ToolFunction | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> Any:
    """Mark a function in an agent's tools module as a tool: `@tool` or `@tool(timeout_s=2)`.

    The agent loader collects the marked functions of the module it imports.
    """

    def mark(target: ToolFunction) -> ToolFunction:
        options = {"name": name, "description": description, "timeout_s": timeout_s}
        target.__opusagent_tool__ = options  # type: ignore[attr-defined]
        return target

    return mark(function) if function is not None else mark


def tools_of_module(namespace: Mapping[str, Any]) -> ToolRegistry:
    """The `@tool`-marked functions among a module's globals."""
    registry = ToolRegistry()
    for value in namespace.values():
        options = getattr(value, "__opusagent_tool__", None)
        if callable(value) and isinstance(options, dict):
            registry.register(value, **options)
    return registry
