"""What only the Redis store does: its key scheme, TTLs, SCAN paging, failing fast."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from opusagent.sessions import RedisStore, SessionRecord, SessionStoreUnavailable
from opusagent.sessions.redis_store import redacted

from .redis_server import RedisServer, free_port
from .session_samples import make_record

TTL_S = 600


@pytest.fixture
async def store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    made = RedisStore(redis_server.url, ttl_s=TTL_S)
    yield made
    await made.aclose()


async def test_record_is_json_under_the_versioned_key(
    store: RedisStore, redis_server: RedisServer
) -> None:
    saved = await store.save(make_record("CA9"))
    with redis_server.client() as client:
        assert list(client.scan_iter()) == ["opusagent:v1:session:CA9"]
        stored = client.get("opusagent:v1:session:CA9")
    assert stored is not None
    assert SessionRecord.model_validate_json(stored) == saved


async def test_every_write_sets_the_ttl(store: RedisStore, redis_server: RedisServer) -> None:
    key = store.key("CA1")
    record = await store.save(make_record())
    with redis_server.client() as client:
        assert TTL_S - 2 <= client.ttl(key) <= TTL_S
        client.expire(key, 5)
        record = await store.save(record)
        assert TTL_S - 2 <= client.ttl(key) <= TTL_S
        client.expire(key, 5)
        assert await store.restore(record.model_copy(update={"version": 7}))
        assert TTL_S - 2 <= client.ttl(key) <= TTL_S


async def test_a_refused_write_leaves_the_ttl_alone(
    store: RedisStore, redis_server: RedisServer
) -> None:
    await store.save(make_record())
    with redis_server.client() as client:
        client.expire(store.key("CA1"), 5)
        assert not await store.restore(make_record())
        assert client.ttl(store.key("CA1")) <= 5


async def test_call_ids_pages_through_scan_and_never_uses_keys(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, ttl_s=TTL_S, scan_count=10)
    for n in range(50):
        await store.save(make_record(f"call-{n}"))
    with redis_server.client() as client:
        client.set("unrelated", "x")
        client.config_resetstat()
        listed = {call_id async for call_id in store.call_ids()}
        stats = client.info("commandstats")
    await store.aclose()
    assert listed == {f"call-{n}" for n in range(50)}
    assert stats["cmdstat_scan"]["calls"] >= 5
    assert "cmdstat_keys" not in stats


async def test_prefixes_keep_stores_apart_even_with_glob_characters(
    redis_server: RedisServer,
) -> None:
    plain = RedisStore(redis_server.url, ttl_s=TTL_S, prefix="tenant")
    starred = RedisStore(redis_server.url, ttl_s=TTL_S, prefix="ten*")
    await plain.save(make_record("A"))
    await starred.save(make_record("B"))
    assert [call_id async for call_id in starred.call_ids()] == ["B"]
    assert [call_id async for call_id in plain.call_ids()] == ["A"]
    assert await starred.load("A") is None
    await plain.aclose()
    await starred.aclose()


async def test_unreachable_server_fails_fast_naming_the_url() -> None:
    url = f"redis://:secret@127.0.0.1:{free_port()}/0"
    store = RedisStore(url, ttl_s=TTL_S)
    started = time.monotonic()
    with pytest.raises(SessionStoreUnavailable, match=r"redis://:\*\*\*@127\.0\.0\.1:\d+/0"):
        await store.save(make_record())
    assert time.monotonic() - started < 1.0
    with pytest.raises(SessionStoreUnavailable) as failed:
        await store.load("CA1")
    assert "secret" not in str(failed.value)
    await store.aclose()


async def test_a_restarted_server_is_used_again_without_an_error(
    store: RedisStore, redis_server: RedisServer
) -> None:
    await store.save(make_record())
    redis_server.restart()
    assert await store.load("CA1") is None
    assert (await store.save(make_record())).version == 1


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("redis://user:pw@host:6379/0", "redis://user:***@host:6379/0"),
        ("unix:///run/redis.sock?db=0&password=pw", "unix:///run/redis.sock?db=0&password=***"),
    ],
)
def test_urls_are_shown_without_their_password(url: str, shown: str) -> None:
    assert redacted(url) == shown
