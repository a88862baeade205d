"""The store contract, run against the memory store and a real Redis alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from opusagent.sessions import MemoryStore, RedisStore, SessionRecord, StaleWriteError
from opusagent.sessions.store import RestorableStore

from .redis_server import RedisServer
from .session_samples import make_record


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[RestorableStore]:
    made: RestorableStore
    if request.param == "memory":
        made = MemoryStore(ttl_s=3600)
    else:
        server: RedisServer = request.getfixturevalue("redis_server")
        made = RedisStore(server.url, ttl_s=3600)
    yield made
    await made.aclose()


def test_record_json_round_trip_is_exact() -> None:
    record = make_record()
    text = record.model_dump_json()
    again = SessionRecord.model_validate_json(text)
    assert again == record
    assert again.model_dump_json() == text


def test_record_times_are_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    record = make_record()
    moved = SessionRecord.model_validate(
        record.model_dump() | {"created_at": datetime(2025, 1, 2, 5, 4, 5, tzinfo=plus_two)}
    )
    assert moved.created_at.utcoffset() == timedelta(0)
    assert moved.created_at.hour == 3
    with pytest.raises(ValidationError, match="timezone-aware"):
        SessionRecord.model_validate(record.model_dump() | {"updated_at": datetime(2025, 1, 2)})


async def test_first_save_stores_version_1_and_loads_back(store: RestorableStore) -> None:
    record = make_record()
    saved = await store.save(record)
    assert saved.version == 1
    assert saved == record.model_copy(update={"version": 1})
    assert await store.load("CA1") == saved


async def test_each_save_adds_one_to_the_version(store: RestorableStore) -> None:
    record = await store.save(make_record())
    for turn in range(1, 4):
        record = await store.save(make_record(turn=turn).model_copy(update={"version": turn}))
        assert record.version == turn + 1
    loaded = await store.load("CA1")
    assert loaded is not None
    assert (loaded.version, loaded.state.turn) == (4, 3)


async def test_stale_writer_is_refused(store: RestorableStore) -> None:
    await store.save(make_record())
    first = await store.load("CA1")
    second = await store.load("CA1")
    assert first is not None and second is not None
    newer = await store.save(first.model_copy(update={"heard_s": 2.0}))

    with pytest.raises(StaleWriteError, match=r"'CA1'.* version 1.* version 2") as refused:
        await store.save(second.model_copy(update={"heard_s": 9.0}))

    assert (refused.value.call_id, refused.value.expected, refused.value.stored) == ("CA1", 1, 2)
    assert await store.load("CA1") == newer


async def test_new_record_cannot_replace_a_stored_one(store: RestorableStore) -> None:
    await store.save(make_record())
    with pytest.raises(StaleWriteError):
        await store.save(make_record(state="other"))


async def test_load_of_unknown_call_is_none(store: RestorableStore) -> None:
    assert await store.load("nobody") is None


async def test_delete_forgets_the_call(store: RestorableStore) -> None:
    await store.save(make_record("CA1"))
    await store.save(make_record("CA2"))
    await store.delete("CA1")
    await store.delete("never-stored")
    assert await store.load("CA1") is None
    assert await store.load("CA2") is not None


async def test_call_ids_lists_every_stored_call_once(store: RestorableStore) -> None:
    wanted = {f"call-{n}" for n in range(60)}
    for call_id in wanted:
        await store.save(make_record(call_id))
    listed = [call_id async for call_id in store.call_ids()]
    assert sorted(listed) == sorted(wanted)


async def test_restore_keeps_the_version_and_never_goes_back(store: RestorableStore) -> None:
    assert await store.restore(make_record().model_copy(update={"version": 5}))
    assert not await store.restore(make_record(state="old").model_copy(update={"version": 4}))
    assert not await store.restore(make_record(state="same").model_copy(update={"version": 5}))
    loaded = await store.load("CA1")
    assert loaded is not None
    assert (loaded.version, loaded.state.state) == (5, "greeting")
    assert (await store.save(loaded)).version == 6
