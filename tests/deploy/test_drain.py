"""Graceful drain: /ready fails, new calls are refused with HTTP 503, live calls go on.

The last two tests run `opusagent serve` as a real process and send it SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bridges.loopback import serving, until
from bridges.test_served_app import loud, served_app, states
from opusagent.bridges.dial import HUNG_UP, DialError, dial
from opusagent.bridges.farends import BrowserFarEnd, TwilioMediaFarEnd
from opusagent.bridges.session import TRY_AGAIN_LATER
from opusagent.sessions import RedisStore
from opusagent.testing import Utterance
from sessions.redis_server import RedisServer
from sessions.test_crash import Server, wait_for_state

Speak = Callable[[str], tuple[npt.NDArray[np.int16], int]]


async def test_draining_fails_ready_and_refuses_new_calls_with_503() -> None:
    app = served_app([])
    async with serving(app) as url:
        await app.state.drain()
        http = httpx.AsyncClient(base_url=url.replace("ws://", "http://"))
        ready = await http.get("/ready")
        voice = await http.post("/twilio/voice", data={"CallSid": "CA1"})
        health = await http.get("/health")
        metrics = await http.get("/metrics")
        with pytest.raises(DialError) as refused:
            async with dial(TwilioMediaFarEnd(), f"{url}/twilio/media"):
                pass
        await http.aclose()

    assert ready.status_code == 503
    assert "draining" in ready.json()["error"]["message"]
    assert voice.status_code == 503 and voice.headers["Retry-After"] == "5"
    assert voice.json()["error"]["code"] == "draining"
    assert refused.value.status == 503
    assert health.status_code == 200
    assert "opusagent_draining 1.0" in metrics.text


async def test_a_live_call_goes_on_while_draining_and_the_drain_waits_for_it() -> None:
    app = served_app([Utterance(0.3, 0.8, "I lost my card")])
    async with serving(app) as url, dial(BrowserFarEnd(16000), f"{url}/browser") as call:
        await call.wait_until_quiet(0.3, timeout=10)
        draining = asyncio.create_task(app.state.drain())
        await asyncio.sleep(0.1)
        await call.silence(0.3)
        await call.play(loud(0.5), 16000)
        await until(lambda: "identify" in states(call.heard), within=5)
        assert not draining.done(), "the drain waits for the live call"
        await call.hangup()
        await asyncio.wait_for(draining, 5)


async def test_a_stream_opened_before_the_drain_but_started_after_is_told_to_try_again() -> None:
    app = served_app([])
    far_end = BrowserFarEnd(16000)
    async with serving(app) as url, connect(f"{url}/browser") as ws:
        await app.state.drain()
        for frame in far_end.opening():
            await ws.send(frame)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == TRY_AGAIN_LATER
    assert "this server is stopping" in closed.value.rcvd.reason


# --- a real server process ------------------------------------------------------------------


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Server]:
    """`opusagent serve` whose drain deadline is the test's parameter (seconds)."""
    monkeypatch.setenv("OPUSAGENT_DRAIN_TIMEOUT_S", str(request.param))
    served = Server(redis_server.url, tmp_path)
    try:
        served.wait_ready()
        yield served
    finally:
        served.stop()


def exit_code(server: Server, within: float) -> int | None:
    try:
        return server.process.wait(within)
    except subprocess.TimeoutExpired:
        return None


def ready_status(server: Server) -> int:
    return httpx.get(f"http://127.0.0.1:{server.port}/ready", timeout=2).status_code


@pytest.mark.slow
@pytest.mark.parametrize("server", [60], indirect=True)
async def test_sigterm_lets_the_live_call_finish_refuses_new_ones_then_exits_0(
    server: Server, redis_server: RedisServer, speak: Speak
) -> None:
    # espeak-ng's "I lost my card" scores near the grammar's word-score threshold; this is
    # well above it (voice/stt/sphinx_decoder.MIN_WORD_SCORE).
    words, rate = speak("my card was stolen")
    store = RedisStore(redis_server.url, 600)
    caller = TwilioMediaFarEnd()
    media = f"ws://127.0.0.1:{server.port}/twilio/media"
    async with dial(caller, media, open_timeout=30) as call:
        await call.wait_until_quiet(1.0, timeout=30)
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(ready_status, server) == 503
        with pytest.raises(DialError) as refused:
            async with dial(TwilioMediaFarEnd(), media):
                pass
        assert refused.value.status == 503
        await call.play(words, rate)
        await wait_for_state(store, caller.call_sid, "identify", within=20)
        assert server.process.poll() is None, "the server waits for the live call"
    await store.aclose()
    started = time.monotonic()
    code = await asyncio.to_thread(exit_code, server, 10)

    assert code == 0
    assert time.monotonic() - started < 5, "the server exits once its last call has ended"


LOAD_CALLS = 5


@pytest.mark.slow
@pytest.mark.parametrize("server", [60], indirect=True)
async def test_sigterm_under_load_cuts_no_call_refuses_new_ones_and_exits_after_the_last(
    server: Server, redis_server: RedisServer
) -> None:
    media = f"ws://127.0.0.1:{server.port}/twilio/media"
    callers = [TwilioMediaFarEnd() for _ in range(LOAD_CALLS)]
    async with contextlib.AsyncExitStack() as stack:
        calls = [await stack.enter_async_context(dial(c, media, open_timeout=30)) for c in callers]
        await asyncio.gather(*(call.wait_until_quiet(1.0, timeout=60) for call in calls))
        server.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        with pytest.raises(DialError) as refused:
            async with dial(TwilioMediaFarEnd(), media):
                pass
        keyed_at = [call.now for call in calls]
        for call in calls:
            await call.dtmf("1#")
        await asyncio.gather(*(call.wait_until_quiet(1.0, timeout=30) for call in calls))
        answered = [call.agent_audio_until > at for call, at in zip(calls, keyed_at, strict=True)]
        still_running = server.process.poll() is None
        for call in calls:
            await call.hangup()
    code = await asyncio.to_thread(exit_code, server, 10)
    store = RedisStore(redis_server.url, 600)
    try:
        sessions = [await store.load(caller.call_sid) for caller in callers]
    finally:
        await store.aclose()

    assert refused.value.status == 503
    assert answered == [True] * LOAD_CALLS, "every live call was still answered after SIGTERM"
    assert still_running, "the server waits for its live calls"
    assert [call.end_reason for call in calls] == [HUNG_UP] * LOAD_CALLS, "none was cut"
    assert code == 0
    for session in sessions:
        assert session is not None and session.ended
        assert [entry.kind for entry in session.state.audit] == ["start", "dtmf", "hangup"]


@pytest.mark.slow
@pytest.mark.parametrize("server", [2], indirect=True)
async def test_a_call_still_live_at_the_deadline_is_left_resumable_in_the_store(
    server: Server, redis_server: RedisServer
) -> None:
    caller = TwilioMediaFarEnd()
    async with dial(caller, f"ws://127.0.0.1:{server.port}/twilio/media", open_timeout=30) as call:
        await call.wait_until_quiet(1.0, timeout=30)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(exit_code, server, 15)
        await asyncio.wait_for(call.wait_ended(), 5)

    assert code == 0
    assert 2.0 <= time.monotonic() - signalled < 10, "it waited for the 2 s drain deadline"
    store = RedisStore(redis_server.url, 600)
    try:
        record = await store.load(caller.call_sid)
    finally:
        await store.aclose()
    assert record is not None and not record.ended, "another server can resume the call"
    assert record.state.state == "welcome"
