import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, HTTPException

from opusagent.app import create_app
from opusagent.config import Settings
from opusagent.voice.vad import SileroVAD


@asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for `app`, inside the app's lifespan (so start-up loaders run)."""
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://test") as http,
    ):
        yield http


async def get(app: FastAPI, path: str, method: str = "GET") -> httpx.Response:
    async with serving(app) as http:
        return await http.request(method, path)


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert error["status"] == status
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"].endswith(".")
    return error


async def test_health() -> None:
    response = await get(create_app(Settings()), "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_settings_are_on_app_state() -> None:
    settings = Settings(port=9999)
    assert create_app(settings).state.settings is settings


async def test_ready_without_loaders() -> None:
    response = await get(create_app(Settings(), loaders={}), "/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "components": {}}


@pytest.mark.slow
async def test_ready_once_the_speech_models_are_loaded_and_warm(tmp_path: Path) -> None:
    app = create_app(
        Settings(tts_cache_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db")
    )
    async with serving(app) as http:
        await app.state.readiness.wait()
        response = await http.get("/ready")
        loaded = {"state": "loaded"}
        assert response.json() == {
            "status": "ready",
            "components": {
                "vad": loaded,
                "stt": loaded,
                "tts": loaded,
                "nlu": loaded,
                "records": loaded,
            },
        }
        assert isinstance(app.state.voice.vad, SileroVAD)


async def test_an_engine_that_cannot_run_here_is_named_by_ready(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("shutil.which", lambda program: None)
    app = create_app(
        Settings(
            tts="flite", tts_cache_dir=tmp_path, database_url=f"sqlite+aiosqlite:///{tmp_path}/c.db"
        )
    )
    async with serving(app) as http:
        await app.state.readiness.wait()
        error = assert_error(await http.get("/ready"), 503, "not_ready")
        tts = error["detail"]["components"]["tts"]
        assert tts["state"] == "failed"
        assert "tts=flite cannot run here: flite is missing (apt-get install flite)" in tts["error"]


async def test_ready_waits_for_a_slow_loader() -> None:
    gate = asyncio.Event()

    async def slow_model() -> None:
        await gate.wait()

    async def quick_model() -> None:
        return None

    app = create_app(Settings(), loaders={"vad": slow_model, "stt": quick_model})
    async with serving(app) as http:
        await asyncio.sleep(0)  # let both loaders run up to their first wait
        error = assert_error(await http.get("/ready"), 503, "not_ready")
        assert error["message"] == "Not ready; still loading: vad."
        assert error["detail"] == {
            "components": {"vad": {"state": "pending"}, "stt": {"state": "loaded"}}
        }
        assert (await http.get("/health")).status_code == 200

        gate.set()
        await app.state.readiness.wait()
        response = await http.get("/ready")
        assert response.status_code == 200
        assert response.json()["status"] == "ready"


async def test_failed_loader_keeps_the_server_up_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_model() -> None:
        raise FileNotFoundError("model.onnx is missing")

    app = create_app(Settings(), loaders={"vad": broken_model})
    async with serving(app) as http:
        await app.state.readiness.wait()
        error = assert_error(await http.get("/ready"), 503, "not_ready")
        assert (
            error["message"] == "Not ready; failed: vad (FileNotFoundError: model.onnx is missing)."
        )
        assert error["detail"]["components"]["vad"] == {
            "state": "failed",
            "error": "FileNotFoundError: model.onnx is missing",
        }
        assert (await http.get("/health")).status_code == 200
    assert "'vad' failed to load" in caplog.text


async def test_pending_loader_is_cancelled_at_shutdown() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def never_loads() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    app = create_app(Settings(), loaders={"vad": never_loads})
    async with serving(app) as http:
        await started.wait()
        assert (await http.get("/ready")).status_code == 503
    assert cancelled.is_set()


async def test_not_found() -> None:
    error = assert_error(await get(create_app(Settings()), "/nope"), 404, "not_found")
    assert error["message"] == "Nothing is served at /nope."
    assert "detail" not in error


async def test_method_not_allowed() -> None:
    response = await get(create_app(Settings()), "/health", method="POST")
    error = assert_error(response, 405, "method_not_allowed")
    assert error["message"] == "POST is not allowed on /health."
    assert response.headers["allow"] == "GET"


async def test_http_exception_keeps_its_message_and_detail() -> None:
    app = create_app(Settings())

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str) -> None:
        raise HTTPException(404, detail=f"No order {order_id} is open.")

    @app.get("/busy")
    async def busy() -> None:
        raise HTTPException(409, detail={"calls": 3})

    error = assert_error(await get(app, "/orders/abc"), 404, "not_found")
    assert error["message"] == "No order abc is open."
    error = assert_error(await get(app, "/busy"), 409, "conflict")
    assert error == {
        "status": 409,
        "code": "conflict",
        "message": "Conflict.",
        "detail": {"calls": 3},
    }


async def test_validation_error() -> None:
    app = create_app(Settings())

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> dict[str, int]:
        return {"item_id": item_id}

    error = assert_error(await get(app, "/items/seven"), 422, "validation_error")
    assert error["message"] == "The request is not valid (1 problem; see detail)."
    [problem] = error["detail"]
    assert problem["loc"] == ["path", "item_id"]
    assert problem["type"] == "int_parsing"


async def test_unhandled_error_is_a_500_without_internals(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = create_app(Settings())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("database password is hunter2")

    with caplog.at_level(logging.ERROR, logger="opusagent.app"):
        response = await get(app, "/boom")
    error = assert_error(response, 500, "internal_error")
    assert "hunter2" not in response.text
    assert "detail" not in error
    [record] = [r for r in caplog.records if r.name == "opusagent.app"]
    assert "GET /boom" in record.getMessage()
    assert record.exc_info is not None
    assert "hunter2" in caplog.text  # the traceback is logged, not sent


def test_loader_names_are_unique() -> None:
    async def load() -> None:
        return None

    app = create_app(Settings(), loaders={"vad": load})
    with pytest.raises(ValueError, match="already registered"):
        app.state.readiness.register("vad", load)
