"""Start-up components (models and the like) that load in the background before the server is ready.

The server answers liveness checks at once; readiness waits until every registered loader has
finished. A loader that fails marks its component failed with the error, and the server keeps
running so that the readiness check can say why it is not ready.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

Loader = Callable[[], Awaitable[None]]
"""Loads one component; returns when the component is usable, raises when it cannot be."""


class ComponentState(enum.StrEnum):
    PENDING = "pending"
    LOADED = "loaded"
    FAILED = "failed"


@dataclass(slots=True)
class Component:
    name: str
    loader: Loader
    state: ComponentState = ComponentState.PENDING
    error: str | None = None


class Readiness:
    """The registered start-up loaders and how far each has got."""

    def __init__(self) -> None:
        self._components: dict[str, Component] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._draining = False

    def register(self, name: str, loader: Loader) -> None:
        """Add a loader to run when the server starts; names must be unique."""
        if name in self._components:
            raise ValueError(f"A start-up component named {name!r} is already registered.")
        if self._tasks:
            raise RuntimeError(f"Cannot register {name!r}: start-up loaders are already running.")
        self._components[name] = Component(name, loader)

    def start(self) -> None:
        """Run every loader as a background task on the running event loop."""
        self._tasks = [
            asyncio.create_task(self._load(component), name=f"load {component.name}")
            for component in self._components.values()
        ]

    async def wait(self) -> None:
        """Return when every loader has finished, loaded or failed."""
        await asyncio.gather(*self._tasks)

    async def stop(self) -> None:
        """Cancel the loaders still running (the server is shutting down)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def ready(self) -> bool:
        if self._draining:
            return False
        return all(c.state is ComponentState.LOADED for c in self._components.values())

    @property
    def draining(self) -> bool:
        return self._draining

    def begin_drain(self) -> None:
        """The server is stopping: from now on it is not ready and takes no new calls."""
        self._draining = True

    def components(self) -> dict[str, dict[str, str]]:
        """Each component's state, and the error of those that failed."""
        return {
            c.name: {"state": c.state.value} | ({"error": c.error} if c.error else {})
            for c in self._components.values()
        }

    def summary(self) -> str:
        """One sentence saying which components are not loaded yet, and why."""
        pending = [c.name for c in self._components.values() if c.state is ComponentState.PENDING]
        failed = [
            f"{c.name} ({c.error})"
            for c in self._components.values()
            if c.state is ComponentState.FAILED
        ]
        parts = []
        if self._draining:
            parts.append("draining: this server is stopping and takes no new calls")
        if pending:
            parts.append("still loading: " + ", ".join(pending))
        if failed:
            parts.append("failed: " + ", ".join(failed))
        return "Not ready; " + "; ".join(parts) + "." if parts else "Ready."

    async def _load(self, component: Component) -> None:
        try:
            await component.loader()
        except Exception as exc:
            component.state = ComponentState.FAILED
            component.error = f"{type(exc).__name__}: {exc}"
            logger.exception("Start-up component %r failed to load", component.name)
        else:
            component.state = ComponentState.LOADED
            logger.info("Start-up component %r loaded", component.name)
