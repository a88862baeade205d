"""The per-call writer: never blocks, saves in order, coalesces, flushes, stops when stale."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from opusagent.sessions import (
    MemoryStore,
    RedisStore,
    ResilientStore,
    SessionRecord,
    SessionWriter,
)

from .redis_server import RedisServer
from .session_samples import make_record

LOGGER = "opusagent.sessions.writer"


class GatedStore(MemoryStore):
    """A memory store that records every save in order and holds it until `gate` is open."""

    def __init__(self) -> None:
        super().__init__(ttl_s=600)
        self.gate = asyncio.Event()
        self.gate.set()
        self.saves: list[SessionRecord] = []

    async def save(self, record: SessionRecord) -> SessionRecord:
        self.saves.append(record)
        await self.gate.wait()
        return await super().save(record)


@pytest.fixture
def store() -> GatedStore:
    return GatedStore()


async def test_put_returns_before_anything_is_stored(store: GatedStore) -> None:
    writer = SessionWriter(store)
    writer.put(make_record())
    assert store.saves == []
    assert await store.load("CA1") is None
    await writer.flush()
    loaded = await store.load("CA1")
    assert loaded is not None
    assert loaded.version == 1


async def test_each_save_uses_the_version_the_previous_one_returned(store: GatedStore) -> None:
    writer = SessionWriter(store)
    for turn in range(3):
        writer.put(make_record(turn=turn))
        await writer.flush()
    assert [(saved.version, saved.state.turn) for saved in store.saves] == [(0, 0), (1, 1), (2, 2)]
    assert writer.saved is not None
    assert writer.saved.version == 3


async def test_puts_during_a_save_are_coalesced_to_the_latest(store: GatedStore) -> None:
    writer = SessionWriter(store)
    store.gate.clear()
    writer.put(make_record(turn=1))
    await asyncio.sleep(0)
    for turn in (2, 3, 4):
        writer.put(make_record(turn=turn))
    store.gate.set()
    await writer.flush()
    assert [saved.state.turn for saved in store.saves] == [1, 4]
    loaded = await store.load("CA1")
    assert loaded is not None
    assert (loaded.version, loaded.state.turn) == (2, 4)


async def test_writes_happen_in_put_order(store: GatedStore) -> None:
    writer = SessionWriter(store)
    for turn in range(1, 6):
        store.gate.clear()
        writer.put(make_record(turn=turn))
        await asyncio.sleep(0)
        store.gate.set()
    await writer.flush()
    assert [saved.state.turn for saved in store.saves] == [1, 2, 3, 4, 5]
    assert [saved.version for saved in store.saves] == [0, 1, 2, 3, 4]


async def test_flush_waits_for_the_latest_put(store: GatedStore) -> None:
    writer = SessionWriter(store)
    store.gate.clear()
    writer.put(make_record(turn=1))
    writer.put(make_record(turn=2))
    flushed = asyncio.create_task(writer.flush())
    await asyncio.sleep(0.01)
    assert not flushed.done()
    store.gate.set()
    await flushed
    loaded = await store.load("CA1")
    assert loaded is not None
    assert loaded.state.turn == 2


async def test_flush_with_nothing_put_returns(store: GatedStore) -> None:
    await asyncio.wait_for(SessionWriter(store).flush(), 1.0)


async def test_later_changes_to_the_live_state_do_not_leak_into_a_put(store: GatedStore) -> None:
    writer = SessionWriter(store)
    record = make_record()
    writer.put(record)
    record.state.slots["card_last4"] = "9999"
    await writer.flush()
    loaded = await store.load("CA1")
    assert loaded is not None
    assert loaded.state.slots["card_last4"] == "1234"


async def test_stale_write_is_logged_and_stops_the_writer(
    store: GatedStore, caplog: pytest.LogCaptureFixture
) -> None:
    resumed = await store.save(make_record())
    theirs = await store.save(resumed.model_copy(update={"heard_s": 7.0}))
    writer = SessionWriter(store)

    writer.put(resumed)
    await writer.flush()
    writer.put(resumed)
    await writer.flush()

    assert writer.stopped
    assert await store.load("CA1") == theirs
    assert len(store.saves) == 3
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "'CA1'" in errors[0].getMessage()


async def test_a_failed_save_is_logged_and_the_writer_goes_on(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStore(redis_server.url, ttl_s=600, timeout_s=0.2)
    writer = SessionWriter(store)
    redis_server.stop()
    writer.put(make_record(turn=1))
    await writer.flush()
    redis_server.start()
    writer.put(make_record(turn=2))
    await writer.flush()

    loaded = await store.load("CA1")
    await store.aclose()
    assert loaded is not None
    assert (loaded.version, loaded.state.turn) == (1, 2)
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert ["'CA1'" in r.getMessage() and r.exc_info is not None for r in errors] == [True]


@pytest.fixture
async def resilient(redis_server: RedisServer) -> AsyncIterator[ResilientStore]:
    primary = RedisStore(redis_server.url, ttl_s=600, timeout_s=0.2)
    store = ResilientStore(primary, MemoryStore(ttl_s=600), retry_s=0.05)
    yield store
    await store.aclose()


async def test_hangup_during_a_redis_outage_loses_nothing(
    resilient: ResilientStore, redis_server: RedisServer
) -> None:
    writer = SessionWriter(resilient)
    writer.put(make_record(turn=1))
    await writer.flush()
    redis_server.stop()
    writer.put(make_record(turn=2))
    writer.put(make_record(turn=3).model_copy(update={"ended": True}))
    await writer.flush()
    redis_server.start()

    primary = RedisStore(redis_server.url, ttl_s=600)
    for _ in range(200):
        if (stored := await primary.load("CA1")) is not None:
            break
        await asyncio.sleep(0.01)
    await primary.aclose()
    assert stored is not None
    assert (stored.version, stored.state.turn, stored.ended) == (2, 3, True)
