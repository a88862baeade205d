"""The memory store's time to live, on the event loop's (virtual) clock."""

from __future__ import annotations

import asyncio

import pytest

from opusagent.sessions import MemoryStore
from opusagent.testing.virtual_time import run_in_virtual_time

from .session_samples import make_record


def test_a_record_expires_ttl_after_its_last_write() -> None:
    async def main() -> tuple[bool, bool, list[str]]:
        store = MemoryStore(ttl_s=60)
        await store.save(make_record("CA1"))
        await asyncio.sleep(59.9)
        kept = await store.load("CA1") is not None
        await asyncio.sleep(0.2)
        gone = await store.load("CA1") is None
        return kept, gone, [call_id async for call_id in store.call_ids()]

    assert run_in_virtual_time(main) == (True, True, [])


def test_every_write_restarts_the_ttl() -> None:
    async def main() -> list[list[str]]:
        store = MemoryStore(ttl_s=60)
        seen: list[list[str]] = []
        first = await store.save(make_record("CA1"))
        await store.save(make_record("CA2"))
        await asyncio.sleep(40)
        await store.save(first)
        await asyncio.sleep(40)
        seen.append([call_id async for call_id in store.call_ids()])
        await store.restore(first.model_copy(update={"version": 9}))
        await asyncio.sleep(40)
        seen.append([call_id async for call_id in store.call_ids()])
        await asyncio.sleep(21)
        seen.append([call_id async for call_id in store.call_ids()])
        return seen

    assert run_in_virtual_time(main) == [["CA1"], ["CA1"], []]


def test_an_expired_record_counts_as_never_stored() -> None:
    async def main() -> int:
        store = MemoryStore(ttl_s=60)
        await store.save(make_record())
        await asyncio.sleep(61)
        return (await store.save(make_record())).version

    assert run_in_virtual_time(main) == 1


def test_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        MemoryStore(ttl_s=0)
