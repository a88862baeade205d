"""Redis restarted (empty, as without persistence) while several calls are under way: every call
finishes, every turn is in its call record, and every session is in Redis afterwards."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bridges.loopback import serving
from bridges.test_served_app import loud, served_app
from opusagent.bridges.dial import HUNG_UP, DialSession, dial
from opusagent.bridges.farends import TwilioMediaFarEnd
from opusagent.sessions import RedisStore
from opusagent.sessions.records import CallRecords
from opusagent.testing import Utterance
from sessions.redis_server import RedisServer

CALLS = 6
DOWN_S = 1.5


async def one_call(url: str, far_end: TwilioMediaFarEnd) -> DialSession:
    """Greeting; "I lost my card" (identify); the card's last four digits (verify); hang up."""
    async with dial(far_end, f"{url}/twilio/media") as call:
        await call.wait_until_quiet(0.3, timeout=10)
        await call.silence(0.2)
        await call.play(loud(0.5), 16000)
        await call.wait_until_quiet(0.5, timeout=10)
        await call.dtmf("4217#")
        await call.wait_until_quiet(0.5, timeout=10)
        await call.hangup()
    return call


async def restart(redis_server: RedisServer, after_s: float) -> None:
    await asyncio.sleep(after_s)
    await asyncio.to_thread(redis_server.stop)
    await asyncio.sleep(DOWN_S)
    await asyncio.to_thread(redis_server.start)


@pytest.mark.slow
async def test_calls_under_way_lose_nothing_when_redis_restarts(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path}/calls.db"
    app = served_app(
        [Utterance(0.2, 0.7, "I lost my card")], redis_url=redis_server.url, database_url=database
    )
    callers = [TwilioMediaFarEnd() for _ in range(CALLS)]
    async with serving(app) as url:
        await app.state.records.open()
        calls, _ = await asyncio.gather(
            asyncio.gather(*(one_call(url, caller) for caller in callers)),
            restart(redis_server, after_s=0.8),
        )
    store = RedisStore(redis_server.url, 600)
    records = await CallRecords.open(database)
    try:
        sessions = [await store.load(caller.call_sid) for caller in callers]
        kept = [await records.get(caller.call_sid) for caller in callers]
    finally:
        await store.aclose()
        await records.aclose()

    assert all(call.end_reason == HUNG_UP for call in calls), "every call finished"
    for session, record in zip(sessions, kept, strict=True):
        assert session is not None and session.ended, "the session is in Redis"
        assert session.state.path == ["welcome", "identify", "lookup_account", "verify"]
        assert record is not None
        said = [(line.speaker, line.text or line.dtmf) for line in record.transcript]
        assert ("caller", "I lost my card") in said
        assert ("caller", "4217") in said
        assert [entry["kind"] for entry in record.audit] == ["start", "speech", "dtmf", "hangup"]
