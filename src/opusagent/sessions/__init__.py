"""Session stores: where each call's state lives between events and between processes."""

from __future__ import annotations

from opusagent.config import Settings
from opusagent.sessions.memory import MemoryStore
from opusagent.sessions.redis_store import RedisStore
from opusagent.sessions.resilient import ResilientStore
from opusagent.sessions.store import (
    RestorableStore,
    SessionRecord,
    SessionStore,
    SessionStoreUnavailable,
    StaleWriteError,
)
from opusagent.sessions.writer import SessionWriter

__all__ = [
    "MemoryStore",
    "RedisStore",
    "ResilientStore",
    "RestorableStore",
    "SessionRecord",
    "SessionStore",
    "SessionStoreUnavailable",
    "SessionWriter",
    "StaleWriteError",
    "store_from_settings",
]


def store_from_settings(settings: Settings) -> SessionStore:
    """Redis (falling back to memory during outages) when `redis_url` is set, else memory."""
    if settings.redis_url:
        return ResilientStore(
            RedisStore(settings.redis_url, settings.session_ttl_s),
            MemoryStore(settings.session_ttl_s),
        )
    return MemoryStore(settings.session_ttl_s)
