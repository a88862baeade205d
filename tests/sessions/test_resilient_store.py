"""Redis outages against a real redis-server: calls go on in memory and nothing is lost."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from opusagent.config import Settings
from opusagent.sessions import (
    MemoryStore,
    RedisStore,
    ResilientStore,
    SessionRecord,
    StaleWriteError,
    store_from_settings,
)

from .redis_server import RedisServer
from .session_samples import make_record

RETRY_S = 0.05
LOGGER = "opusagent.sessions.resilient"

MakeStore = Callable[..., ResilientStore]


@pytest.fixture
async def make_store(redis_server: RedisServer) -> AsyncIterator[MakeStore]:
    made: list[ResilientStore] = []

    def make(retry_s: float = RETRY_S) -> ResilientStore:
        primary = RedisStore(redis_server.url, ttl_s=600, timeout_s=0.2)
        made.append(ResilientStore(primary, MemoryStore(ttl_s=600), retry_s=retry_s))
        return made[-1]

    yield make
    for store in made:
        await store.aclose()


@pytest.fixture
async def other_server(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    """Another server's view of the same Redis."""
    store = RedisStore(redis_server.url, ttl_s=600)
    yield store
    await store.aclose()


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelname == "WARNING"]


async def test_saves_go_to_memory_while_redis_is_down(
    make_store: MakeStore, redis_server: RedisServer
) -> None:
    store = make_store(retry_s=60)
    saved = await store.save(make_record("CA1"))
    redis_server.stop()

    started = time.monotonic()
    saved = await store.save(saved.model_copy(update={"heard_s": 3.0}))
    new_call = await store.save(make_record("CA2"))
    assert time.monotonic() - started < 1.0

    assert (saved.version, new_call.version) == (2, 1)
    assert store.degraded
    assert await store.load("CA1") == saved
    assert await store.load("CA2") == new_call
    assert sorted([call_id async for call_id in store.call_ids()]) == ["CA1", "CA2"]


async def test_one_warning_per_outage_and_every_failure_counted(
    make_store: MakeStore, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = make_store()
    record = await store.save(make_record())
    redis_server.stop()
    for _ in range(3):
        await asyncio.sleep(RETRY_S * 1.5)
        record = await store.save(record)

    assert store.failures >= 3
    assert len(warnings(caplog)) == 1
    assert redis_server.url in warnings(caplog)[0]

    redis_server.start()
    await asyncio.sleep(RETRY_S * 1.5)
    record = await store.save(record)
    assert not store.degraded
    redis_server.stop()
    await store.save(record)
    assert len(warnings(caplog)) == 2


async def test_redis_is_not_retried_before_retry_s(
    make_store: MakeStore, redis_server: RedisServer
) -> None:
    store = make_store(retry_s=60)
    record = await store.save(make_record())
    redis_server.stop()
    for _ in range(5):
        record = await store.save(record)
        await store.load("CA1")
    assert store.failures == 1


async def test_restarted_redis_gets_every_change_written_through(
    make_store: MakeStore, redis_server: RedisServer, other_server: RedisStore
) -> None:
    store = make_store()
    first = await store.save(make_record("CA1"))
    redis_server.stop()
    changed = make_record("CA1", state="verify", turn=2)
    first = await store.save(changed.model_copy(update={"version": first.version}))
    second = await store.save(make_record("CA2"))
    redis_server.start()
    await asyncio.sleep(RETRY_S * 1.5)

    assert await store.load("CA1") == first
    assert await other_server.load("CA1") == first
    assert await other_server.load("CA2") == second
    assert not store.degraded
    assert [call_id async for call_id in store.fallback.call_ids()] == []
    assert (await store.save(first)).version == first.version + 1


async def test_write_through_needs_no_further_calls(
    make_store: MakeStore, redis_server: RedisServer, other_server: RedisStore
) -> None:
    store = make_store()
    redis_server.stop()
    saved = await store.save(make_record())
    redis_server.start()
    assert await until(lambda: other_server.load("CA1")) == saved


async def test_newer_copy_in_redis_is_not_overwritten(
    make_store: MakeStore,
    redis_server: RedisServer,
    other_server: RedisStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    store = make_store(retry_s=0.3)
    mine = await store.save(make_record())
    redis_server.stop()
    mine = await store.save(mine)
    redis_server.start()
    theirs = make_record(state="transfer").model_copy(update={"version": 7})
    assert await other_server.restore(theirs)
    await asyncio.sleep(0.35)

    assert await store.load("CA1") == theirs
    assert any("CA1" in message for message in warnings(caplog))
    with pytest.raises(StaleWriteError):
        await store.save(mine)


async def test_delete_during_an_outage_reaches_redis(
    make_store: MakeStore, redis_server: RedisServer, other_server: RedisStore
) -> None:
    store = make_store(retry_s=0.3)
    await store.save(make_record("CA1"))
    redis_server.pause()
    await store.load("CA2")  # times out: the outage starts, Redis is left alone for retry_s
    await store.delete("CA1")
    assert await store.load("CA1") is None
    redis_server.resume()
    assert await other_server.load("CA1") is not None

    await asyncio.sleep(0.35)
    await store.load("CA2")
    assert await other_server.load("CA1") is None


async def test_unnoticed_restart_that_lost_the_call_loses_nothing(
    make_store: MakeStore, redis_server: RedisServer, other_server: RedisStore
) -> None:
    store = make_store()
    record = await store.save(make_record())
    record = await store.save(record.model_copy(update={"heard_s": 4.0}))
    redis_server.restart()

    saved = await store.save(record.model_copy(update={"heard_s": 5.0}))

    assert saved.version == 3
    assert await other_server.load("CA1") == saved


async def test_closing_makes_a_last_write_through(
    redis_server: RedisServer, other_server: RedisStore
) -> None:
    primary = RedisStore(redis_server.url, ttl_s=600, timeout_s=0.2)
    store = ResilientStore(primary, MemoryStore(ttl_s=600), retry_s=60)
    redis_server.stop()
    saved = await store.save(make_record())
    redis_server.start()
    await store.aclose()
    assert await other_server.load("CA1") == saved


def test_store_from_settings_picks_redis_only_when_configured() -> None:
    assert isinstance(store_from_settings(Settings()), MemoryStore)
    store = store_from_settings(Settings(redis_url="redis://127.0.0.1:1/0", session_ttl_s=120))
    assert isinstance(store, ResilientStore)
    assert isinstance(store.primary, RedisStore)
    assert (store.primary.url, store.primary.ttl_s) == ("redis://127.0.0.1:1/0", 120)
    assert isinstance(store.fallback, MemoryStore)
    assert store.fallback.ttl_s == 120


async def until(
    load: Callable[[], Awaitable[SessionRecord | None]], timeout_s: float = 2.0
) -> SessionRecord | None:
    """What `load()` returns once it returns a record (None after about `timeout_s`)."""
    for _ in range(round(timeout_s / 0.01)):
        if (record := await load()) is not None:
            return record
        await asyncio.sleep(0.01)
    return None
