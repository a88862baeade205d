"""Limits over real sockets: message size, audio floods, concurrent calls, REST request rate."""

from __future__ import annotations

import asyncio
import logging

import pytest
from websockets.exceptions import ConnectionClosed

from bridges.loopback import until
from bridges.test_served_app import loud
from opusagent.bridges.dial import dial
from opusagent.bridges.farends import BrowserFarEnd, TwilioMediaFarEnd
from opusagent.config import BridgeSettings, LimitSettings
from telemetry.served import sample, scrape

from .served import SILENCE_20MS_MULAW, closed_code, http_url, served, stream

KEY = "k-0123456789"


# --- message size ----------------------------------------------------------------------------


async def test_an_oversized_message_closes_the_stream_with_1009(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limits = LimitSettings(max_message_bytes=4096)
    async with served(limits=limits) as (app, url, _http):
        async with stream(TwilioMediaFarEnd(), f"{url}/twilio/media") as ws:
            await until(lambda: len(app.state.live_calls) == 1)
            await ws.send("x" * 5000)
            code = await closed_code(ws)
        samples = await scrape(http_url(url))

    assert code == 1009
    assert any("max_message_bytes" in r.message for r in caplog.records)
    assert sample(samples, "opusagent_limited_total", limit="message_size", endpoint="twilio") == 1


async def test_a_call_cut_by_an_oversized_message_stays_resumable() -> None:
    far = TwilioMediaFarEnd()
    async with served(limits=LimitSettings(max_message_bytes=4096)) as (app, url, _http):
        async with stream(far, f"{url}/twilio/media") as ws:
            await until(lambda: len(app.state.live_calls) == 1)
            await ws.send(far.audio(SILENCE_20MS_MULAW * 30))
            await closed_code(ws)
        await until(lambda: len(app.state.live_calls) == 0)
        session = await app.state.sessions.load(far.call_sid)

    assert session is not None
    assert not session.ended


# --- audio rate ------------------------------------------------------------------------------


async def test_caller_audio_faster_than_the_limit_is_cut_off_with_1008(
    caplog: pytest.LogCaptureFixture,
) -> None:
    far = TwilioMediaFarEnd()
    async with served(limits=LimitSettings(audio_burst_s=1.0)) as (app, url, _http):
        async with stream(far, f"{url}/twilio/media") as ws:
            await until(lambda: len(app.state.live_calls) == 1)
            with pytest.raises(ConnectionClosed):
                for _ in range(500):  # 10 s of audio, as fast as the socket takes it
                    await ws.send(far.audio(SILENCE_20MS_MULAW))
                    await asyncio.sleep(0)
                await ws.recv()
            code = ws.close_code
        samples = await scrape(http_url(url))

    assert code == 1008
    assert any("a flood" in r.message and r.levelno == logging.ERROR for r in caplog.records)
    assert sample(samples, "opusagent_limited_total", limit="audio_flood", endpoint="twilio") == 1


async def test_a_caller_speaking_in_real_time_is_not_cut_off() -> None:
    limits = LimitSettings(audio_burst_s=0.5)
    async with (
        served(limits=limits) as (_, url, _http),
        dial(BrowserFarEnd(16000), f"{url}/browser") as call,
    ):
        await call.silence(0.5)
        await call.play(loud(1.5), 16000)
        await call.silence(0.5)
        ended = call.ended

    assert not ended


# --- concurrent calls ------------------------------------------------------------------------


async def test_a_stream_beyond_max_calls_is_refused_with_1013() -> None:
    async with (
        served(limits=LimitSettings(max_calls=1)) as (app, url, _http),
        dial(BrowserFarEnd(16000), f"{url}/browser"),
    ):
        await until(lambda: len(app.state.live_calls) == 1)
        async with stream(TwilioMediaFarEnd(), f"{url}/twilio/media") as second:
            code = await closed_code(second)

    assert code == 1013


async def test_a_twilio_call_beyond_max_calls_is_rejected_busy() -> None:
    async with served(limits=LimitSettings(max_calls=1)) as (app, url, http):
        async with dial(BrowserFarEnd(16000), f"{url}/browser"):
            await until(lambda: len(app.state.live_calls) == 1)
            busy = await http.post("/twilio/voice", data={"CallSid": "CA1", "From": "+1555"})
        samples = await scrape(http_url(url))

    assert busy.status_code == 200
    assert busy.headers["content-type"].startswith("text/xml")
    assert '<Response><Reject reason="busy" /></Response>' in busy.text
    assert sample(samples, "opusagent_limited_total", limit="busy", endpoint="twilio") == 1


async def test_a_twilio_call_within_max_calls_is_connected() -> None:
    async with served(limits=LimitSettings(max_calls=1)) as (_, _url, http):
        answer = await http.post("/twilio/voice", data={"CallSid": "CA1", "From": "+1555"})

    assert "<Connect><Stream" in answer.text


# --- REST request rate -----------------------------------------------------------------------


async def test_rest_requests_beyond_the_rate_are_answered_429_with_retry_after() -> None:
    limits = LimitSettings(rest_requests_per_s=0.5, rest_burst=3)
    async with served(limits=limits) as (_, _url, http):
        answers = [await http.get("/agents") for _ in range(4)]

    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    assert answers[-1].headers["Retry-After"] == "2"
    assert answers[-1].json()["error"]["code"] == "rate_limited"


async def test_requests_with_the_api_key_have_a_bucket_of_their_own() -> None:
    limits = LimitSettings(rest_requests_per_s=0.5, rest_burst=2)
    bridges = BridgeSettings(api_key=KEY)
    async with served(limits=limits, bridges=bridges) as (_, _url, http):
        anonymous = [(await http.get("/agents")).status_code for _ in range(3)]
        keyed = [(await http.get("/agents", headers={"X-API-Key": KEY})).status_code]

    assert (anonymous, keyed) == ([200, 200, 429], [200])


async def test_provider_webhooks_are_not_rate_limited() -> None:
    limits = LimitSettings(rest_requests_per_s=0.5, rest_burst=1)
    async with served(limits=limits) as (_, _url, http):
        answers = [(await http.post("/twilio/voice", data={"CallSid": "CA1"})) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 200]
