"""Authentication by default: in production an endpoint without its credential refuses every
request unless `bridges.allow_unauthenticated` lists it; start-up says which are open or refused."""

from __future__ import annotations

import logging

import pytest

from bridges.loopback import serving
from bridges.test_served_app import served_app
from opusagent.app import create_app
from opusagent.bridges.dial import DialError, dial
from opusagent.bridges.farends import AcsFarEnd, BrowserFarEnd, TwilioMediaFarEnd
from opusagent.config import BridgeSettings, Settings
from opusagent.security import ENDPOINTS, PUBLIC_PAGES, PUBLIC_PATHS, endpoint_of

from .served import served

KEY = "k-0123456789"


async def test_production_refuses_a_stream_whose_credential_is_not_set(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with served(environment="production") as (_, url, _http):
        with pytest.raises(DialError) as refused:
            async with dial(AcsFarEnd(), f"{url}/acs"):
                pass

    assert refused.value.status == 403
    assert any(
        "refused a request to /acs" in r.message and "bridges.acs_token" in r.message
        for r in caplog.records
    )


async def test_production_serves_a_stream_presenting_its_credential() -> None:
    bridges = BridgeSettings(acs_token="acs-secret")
    async with (
        served(environment="production", bridges=bridges) as (app, url, _),
        dial(AcsFarEnd(token="acs-secret"), f"{url}/acs") as call,
    ):
        await call.wait_until_quiet(0.2, timeout=5)
        assert len(app.state.live_calls) == 1


async def test_production_still_checks_the_credential_that_is_set() -> None:
    bridges = BridgeSettings(twilio_auth_token="tw-token-0123")
    async with served(environment="production", bridges=bridges) as (_, url, _http):
        with pytest.raises(DialError) as refused:
            async with dial(TwilioMediaFarEnd(), f"{url}/twilio/media"):
                pass

    assert refused.value.status == 403


async def test_production_serves_an_endpoint_listed_as_allowed_unauthenticated() -> None:
    bridges = BridgeSettings(allow_unauthenticated=["browser"])
    async with served(environment="production", bridges=bridges) as (app, url, http):
        async with dial(BrowserFarEnd(16000), f"{url}/browser") as call:
            await call.wait_until_quiet(0.2, timeout=5)
            assert len(app.state.live_calls) == 1
        assert (await http.get("/agents")).status_code == 200


async def test_production_refuses_the_rest_api_without_an_api_key() -> None:
    async with served(environment="production") as (_, _url, http):
        response = await http.get("/calls")

    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "unauthenticated_endpoint"
    assert "bridges.api_key" in error["message"]


async def test_production_serves_the_rest_api_with_its_key() -> None:
    bridges = BridgeSettings(api_key=KEY)
    async with served(environment="production", bridges=bridges) as (_, _url, http):
        with_key = await http.get("/live/calls", headers={"X-API-Key": KEY})
        without = await http.get("/live/calls")

    assert (with_key.status_code, without.status_code) == (200, 401)


async def test_development_serves_every_endpoint_without_credentials() -> None:
    async with served() as (app, url, http):
        async with dial(AcsFarEnd(), f"{url}/acs") as call:
            await call.wait_until_quiet(0.2, timeout=5)
            assert len(app.state.live_calls) == 1
        assert (await http.get("/live/calls")).status_code == 200


async def test_start_up_warns_once_per_open_endpoint_in_development(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="opusagent.security")
    async with serving(served_app([], bridges=BridgeSettings(acs_token="t-acs-0123"))):
        pass

    warned = [r for r in caplog.records if r.name == "opusagent.security"]
    assert {r.levelno for r in warned} == {logging.WARNING}
    assert sorted(r.message.split(" ")[0] for r in warned) == sorted(
        e.name for e in ENDPOINTS if e.name != "acs"
    )
    [twilio] = [r.message for r in warned if r.message.startswith("twilio ")]
    assert "bridges.twilio_auth_token" in twilio


async def test_start_up_logs_an_error_per_refused_endpoint_in_production(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="opusagent.security")
    bridges = BridgeSettings(api_key=KEY, allow_unauthenticated=["browser", "chat"])
    async with serving(served_app([], environment="production", bridges=bridges)):
        pass

    lines = [r for r in caplog.records if r.name == "opusagent.security"]
    errors = {r.message.split(" ")[0] for r in lines if r.levelno == logging.ERROR}
    warnings = {r.message.split(" ")[0] for r in lines if r.levelno == logging.WARNING}
    assert errors == {"twilio", "audiocodes", "acs", "telnyx", "vonage"}
    assert warnings == {"browser", "chat"}


def test_every_route_is_an_endpoint_or_public() -> None:
    app = create_app(Settings(), loaders={})

    unclassified = [
        path
        for route in app.routes
        if (path := getattr(route, "path", None)) is not None
        and endpoint_of(path) is None
        and path not in PUBLIC_PAGES
        and not any(path == p or path.startswith(p + "/") for p in PUBLIC_PATHS)
    ]

    assert unclassified == []
