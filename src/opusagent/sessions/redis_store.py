"""The Redis session store (redis-py asyncio), so a call can resume on any server.

Key scheme: `{prefix}:v1:session:{call_id}` holds the record as JSON (`SessionRecord`), written
with `SET … EX ttl` on every write. `v1` is the record's schema version: a future incompatible
change to `SessionRecord` uses `v2` keys, so old and new servers never read each other's records.

Compare-and-set is one Lua script (`EVALSHA`, reloaded by redis-py after a server restart) rather
than WATCH/MULTI: the script runs atomically on the server in a single round trip, needs no
dedicated connection and no client-side retry loop when writers contend, and a refusal comes back
with the stored version to report. Listing uses `SCAN` with `MATCH`, never `KEYS`, so a large
keyspace is walked in pages without blocking the server.

Timeouts are short and there is a single immediate retry (enough to replace a pooled connection
that a restarted server closed), so an unreachable server fails fast with
`SessionStoreUnavailable` instead of holding up the caller.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from opusagent.sessions.store import SessionRecord, SessionStoreUnavailable, StaleWriteError

SCHEMA = "v1"
"""Schema version of the stored JSON; part of every key."""

# KEYS[1] session key; ARGV[1] version to compare; ARGV[2] record JSON; ARGV[3] TTL in seconds;
# ARGV[4] "equal" (save: write if the stored version equals ARGV[1]) or "older" (restore: write
# if the stored version is below ARGV[1]). Returns the version stored before the call (0: none).
_WRITE_IF = """
local current = redis.call('GET', KEYS[1])
local stored = 0
if current then stored = tonumber(cjson.decode(current)['version']) end
local wanted = tonumber(ARGV[1])
if (ARGV[4] == 'equal' and stored == wanted) or (ARGV[4] == 'older' and stored < wanted) then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
end
return stored
"""


class RedisStore:
    """Session records in Redis under `{prefix}:v1:session:{call_id}`, expiring after `ttl_s`."""

    def __init__(
        self,
        url: str,
        ttl_s: int,
        *,
        prefix: str = "opusagent",
        timeout_s: float = 0.5,
        scan_count: int = 200,
    ) -> None:
        if ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, not {ttl_s}")
        self.url = url
        self.ttl_s = ttl_s
        self.scan_count = scan_count
        self._key_prefix = f"{prefix}:{SCHEMA}:session:"
        self._client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        self._write_if = self._client.register_script(_WRITE_IF)

    def key(self, call_id: str) -> str:
        """The Redis key holding `call_id`'s record."""
        return self._key_prefix + call_id

    async def load(self, call_id: str) -> SessionRecord | None:
        with self._reachable():
            text = await self._client.get(self.key(call_id))
        return None if text is None else SessionRecord.model_validate_json(text)

    async def save(self, record: SessionRecord) -> SessionRecord:
        saved = record.model_copy(update={"version": record.version + 1})
        stored = await self._write(saved, record.version, "equal")
        if stored != record.version:
            raise StaleWriteError(record.call_id, record.version, stored)
        return saved

    async def restore(self, record: SessionRecord) -> bool:
        return await self._write(record, record.version, "older") < record.version

    async def delete(self, call_id: str) -> None:
        with self._reachable():
            await self._client.delete(self.key(call_id))

    async def call_ids(self) -> AsyncIterator[str]:
        # SCAN may return a key more than once; each id is yielded once.
        seen: set[str] = set()
        pattern = _glob_escape(self._key_prefix) + "*"
        with self._reachable():
            async for key in self._client.scan_iter(match=pattern, count=self.scan_count):
                call_id = key[len(self._key_prefix) :]
                if call_id not in seen:
                    seen.add(call_id)
                    yield call_id

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _write(self, record: SessionRecord, version: int, mode: str) -> int:
        """Run the compare-and-set script; the version stored before it ran."""
        args: list[str | int] = [version, record.model_dump_json(), self.ttl_s, mode]
        with self._reachable():
            stored = await self._write_if(keys=[self.key(record.call_id)], args=args)
        return int(stored)

    @contextlib.contextmanager
    def _reachable(self) -> Iterator[None]:
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise SessionStoreUnavailable(
                f"Redis session store at {redacted(self.url)} is unavailable: {exc}"
            ) from exc


def redacted(url: str) -> str:
    """`url` with its password (in the user part or the query) replaced by `***`."""
    url = re.sub(r"^([a-z]+://[^:/@]*:)[^@/]*@", r"\1***@", url)
    return re.sub(r"([?&]password=)[^&#]*", r"\1***", url)


def _glob_escape(text: str) -> str:
    """`text` matched literally in a Redis glob pattern (SCAN MATCH)."""
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)
