"""Names that lead to a conversation: resume codes texted to a caller, and the phone numbers
that continue a conversation by SMS.

`code:<digits>` and `sms:<number>` map to a call id, expire with the sessions (`session_ttl_s`),
and live in Redis beside the sessions when it is configured (key `{prefix}:v1:link:{name}`), so
any server can follow them.
"""

from __future__ import annotations

import secrets
import time
from typing import Protocol

import redis.asyncio as redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opusagent.config import Settings
from opusagent.sessions.redis_store import redacted
from opusagent.sessions.store import SessionStoreUnavailable

CODE_DIGITS = 6
_ISSUE_ATTEMPTS = 8


class Links(Protocol):
    async def put(self, name: str, call_id: str, *, only_new: bool = False) -> bool:
        """Point `name` at `call_id`; with `only_new`, only if `name` is free (True: done)."""
        ...

    async def get(self, name: str) -> str | None: ...

    async def aclose(self) -> None: ...


class MemoryLinks:
    """Links in this process, expiring `ttl_s` after they were put (monotonic clock)."""

    def __init__(self, ttl_s: float) -> None:
        self._clock = time.monotonic
        self._ttl_s = ttl_s
        self._links: dict[str, tuple[str, float]] = {}

    async def put(self, name: str, call_id: str, *, only_new: bool = False) -> bool:
        if only_new and await self.get(name) is not None:
            return False
        self._links[name] = (call_id, self._clock() + self._ttl_s)
        return True

    async def get(self, name: str) -> str | None:
        found = self._links.get(name)
        if found is None:
            return None
        call_id, expires = found
        if expires <= self._clock():
            del self._links[name]
            return None
        return call_id

    async def aclose(self) -> None:
        self._links.clear()


class RedisLinks:
    """Links in Redis: `SET {prefix}:v1:link:{name} call_id EX ttl [NX]`."""

    def __init__(self, url: str, ttl_s: int, *, prefix: str = "opusagent") -> None:
        self._url = url
        self._ttl_s = ttl_s
        self._prefix = prefix
        self._redis = redis.Redis.from_url(
            url, decode_responses=True, socket_timeout=0.5, socket_connect_timeout=0.5
        )

    def key(self, name: str) -> str:
        return f"{self._prefix}:v1:link:{name}"

    async def put(self, name: str, call_id: str, *, only_new: bool = False) -> bool:
        try:
            done = await self._redis.set(self.key(name), call_id, ex=self._ttl_s, nx=only_new)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise SessionStoreUnavailable(f"Redis at {redacted(self._url)}: {exc}") from exc
        return bool(done)

    async def get(self, name: str) -> str | None:
        try:
            found = await self._redis.get(self.key(name))
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise SessionStoreUnavailable(f"Redis at {redacted(self._url)}: {exc}") from exc
        return str(found) if found is not None else None

    async def aclose(self) -> None:
        await self._redis.aclose()


async def issue_code(links: Links, call_id: str) -> str:
    """A fresh random resume code for `call_id` (six digits, unique while it lives)."""
    for _ in range(_ISSUE_ATTEMPTS):
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        if await links.put(f"code:{code}", call_id, only_new=True):
            return code
    raise SessionStoreUnavailable("no free resume code after several tries")


def links_from_settings(settings: Settings) -> Links:
    if settings.redis_url:
        return RedisLinks(settings.redis_url, settings.session_ttl_s)
    return MemoryLinks(settings.session_ttl_s)
