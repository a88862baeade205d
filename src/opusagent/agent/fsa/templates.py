"""Jinja templates and expressions of an agent file, rendered in a sandbox.

Templates see `slots` (values), `spoken` (their confirmation forms), `tools` (results),
`context` (call facts such as the caller's number), `state`, `retries` and `no_inputs`.
Undefined names are errors, so a typo in an agent file fails lint instead of speaking blanks.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


class AgentTemplateError(ValueError):
    """A template or expression that does not parse or render."""


@functools.lru_cache(maxsize=1024)
def _template(source: str) -> Any:
    try:
        return _ENV.from_string(source)
    except TemplateError as exc:
        raise AgentTemplateError(f"template {source!r}: {exc}") from None


@functools.lru_cache(maxsize=1024)
def _expression(source: str) -> Any:
    try:
        return _ENV.compile_expression(source, undefined_to_none=False)
    except TemplateError as exc:
        raise AgentTemplateError(f"expression {source!r}: {exc}") from None


def render(source: str, variables: Mapping[str, Any]) -> str:
    """`source` rendered with `variables`, whitespace runs folded to one space."""
    try:
        text = _template(source).render(variables)
    except TemplateError as exc:
        raise AgentTemplateError(f"template {source!r}: {exc}") from None
    return " ".join(str(text).split())


def evaluate(source: str, variables: Mapping[str, Any]) -> Any:
    """The value of the Jinja expression `source`."""
    try:
        value = _expression(source)(**variables)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
    except TemplateError as exc:
        raise AgentTemplateError(f"expression {source!r}: {exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError, AttributeError) as exc:
        raise AgentTemplateError(f"expression {source!r}: {exc}") from None
    return value


def check_syntax(source: str, *, expression: bool = False) -> None:
    """Raise `AgentTemplateError` when `source` does not parse."""
    if expression:
        _expression(source)
    else:
        _template(source)
