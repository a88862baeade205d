"""The FastAPI application: health and readiness checks, and one JSON shape for every error.

Every 4xx and 5xx response has the body
`{"error": {"status": <int>, "code": "<snake_case>", "message": "<sentence>", "detail": ...}}`,
where `detail` is present only when there is more to say (e.g. the validation errors of a 422).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opusagent import __version__
from opusagent.agent.fsa.catalog import AgentCatalog
from opusagent.agent.llm.endpoint import llm_from_settings
from opusagent.agent.nlu.embeddings import MiniLMEmbedder
from opusagent.bridges.twilio_rest import TwilioRest, rest_from_settings
from opusagent.config import Settings
from opusagent.drain import REFUSAL_MESSAGE, RETRY_AFTER_S, DrainGate, drain
from opusagent.limits import BusyWebhooks, LimitCounts, MessageSizeLimit, RestRateLimit
from opusagent.readiness import Loader, Readiness
from opusagent.security import AccessGate, log_access, refused_endpoints
from opusagent.serving import CallMaker, mount_bridges
from opusagent.sessions import store_from_settings
from opusagent.sessions.calls import RecordsHolder
from opusagent.sessions.links import links_from_settings
from opusagent.sessions.records_api import mount_call_records
from opusagent.telemetry import Metrics, Telemetry, telemetry_from_settings
from opusagent.telemetry.metrics import ErrorCounter, LoopLagMonitor, mount_metrics
from opusagent.voice.stack import VoiceStack
from opusagent.web import mount_web

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings,
    loaders: Mapping[str, Loader] | None = None,
    agents: AgentCatalog | None = None,
    *,
    bridges: bool = True,
    twilio: TwilioRest | None = None,
    telemetry: Telemetry | None = None,
) -> FastAPI:
    """A new application for `settings`, serving every bridge.

    `loaders` are the start-up components `/ready` waits for; by default the process's speech
    models (VAD, STT, TTS). Tests pass their own to control readiness. `agents` are the agents
    served; by default those of `settings.agents` (a broken agent file stops start-up with a
    message naming the file and line). `bridges=False` serves no calls (tests mount a bridge of
    their own with fake stages). `twilio` is the Twilio account's REST client; by default the
    one `settings.bridges` configures, if any. `telemetry` holds the metrics (`/metrics`) and
    the tracer; by default new ones, exporting traces as `settings.telemetry` says.
    """
    readiness = Readiness()
    voice = VoiceStack(settings)
    telemetry = telemetry or telemetry_from_settings(settings)
    metrics = telemetry.metrics
    metrics.draining.set_function(lambda: float(readiness.draining))
    limit_counts = LimitCounts(metrics.registry)
    catalog = None
    llm = None
    twilio = twilio or rest_from_settings(settings.bridges)
    if bridges:
        llm = llm_from_settings(settings) if agents is None else None
        catalog = agents or AgentCatalog.load(
            settings.agents,
            default=settings.default_agent,
            twilio=twilio,
            sms_from=settings.bridges.twilio_from_number,
            proposer=llm.proposer if llm is not None else None,
            phraser=llm.phraser if llm is not None else None,
        )
    store = store_from_settings(settings)
    links = links_from_settings(settings)
    records = RecordsHolder(settings.database_url)
    if loaders is None:
        loaders = {}
        if settings.backend == "pipeline":  # a speech-to-speech model listens and speaks itself
            loaders = dict(voice.loaders())
            loaders["vad"] = functools.partial(_load_vad, voice, metrics)
        if catalog is not None and settings.nlu_embeddings:
            loaders["nlu"] = functools.partial(_load_embeddings, catalog)
        loaders["records"] = records.open
    calls = (
        CallMaker(settings, voice, catalog, store, records, links, telemetry, limit_counts)
        if catalog is not None
        else None
    )
    for name, loader in loaders.items():
        readiness.register(name, loader)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if calls is not None:
            log_access(settings)
        readiness.start()
        loop_lag = LoopLagMonitor(metrics)
        loop_lag.start()
        errors = ErrorCounter(metrics)
        logging.getLogger().addHandler(errors)
        try:
            yield
        finally:
            logging.getLogger().removeHandler(errors)
            await loop_lag.aclose()
            await readiness.stop()
            if calls is not None:
                await calls.aclose()
            await store.aclose()
            await links.aclose()
            await records.aclose()
            await voice.aclose()
            if llm is not None:
                await llm.aclose()
            telemetry.shutdown()

    app = FastAPI(title="OpusAgent", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.readiness = readiness
    app.state.voice = voice
    app.state.sessions = store
    app.state.links = links
    app.state.records = records
    app.state.telemetry = telemetry
    app.state.drain = functools.partial(drain, readiness, calls, settings.drain_timeout_s)
    if catalog is not None and calls is not None:
        app.state.agents = catalog
        mount_bridges(app, settings, calls, twilio)
        mount_call_records(
            app,
            records,
            api_key=settings.bridges.api_key,
            recordings_dir=settings.recordings_dir,
        )
        app.state.live_calls = calls.live
        mount_web(app, catalog, calls.live, api_key=settings.bridges.api_key)

    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    limits = settings.limits
    app.add_middleware(MessageSizeLimit, max_bytes=limits.max_message_bytes, counts=limit_counts)
    if calls is not None:
        app.add_middleware(
            BusyWebhooks,
            max_calls=limits.max_calls,
            in_progress=calls.live.__len__,
            counts=limit_counts,
        )
    app.add_middleware(DrainGate, readiness=readiness, refusal=_draining_refusal())
    app.add_middleware(
        RestRateLimit,
        limits=limits,
        api_key=settings.bridges.api_key,
        counts=limit_counts,
        respond=error_response,
    )
    app.add_middleware(AccessGate, refused=refused_endpoints(settings), respond=error_response)
    app.add_middleware(UnhandledErrorMiddleware)
    mount_metrics(app, metrics)

    @app.get("/health", summary="Liveness: the process is up and serving")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", summary="Readiness: every start-up component has loaded")
    async def ready() -> JSONResponse:
        components = readiness.components()
        if readiness.ready:
            return JSONResponse({"status": "ready", "components": components})
        return error_response(
            HTTPStatus.SERVICE_UNAVAILABLE,
            "not_ready",
            readiness.summary(),
            detail={"components": components},
        )

    return app


async def _load_vad(voice: VoiceStack, metrics: Metrics) -> None:
    await voice.load_vad()
    if voice.vad is not None:
        voice.vad.on_batch = metrics.vad_batch


def _draining_refusal() -> JSONResponse:
    return error_response(
        HTTPStatus.SERVICE_UNAVAILABLE,
        "draining",
        REFUSAL_MESSAGE,
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def _load_embeddings(catalog: AgentCatalog) -> None:
    embedder = await asyncio.to_thread(MiniLMEmbedder)
    await asyncio.to_thread(catalog.use_embedder, embedder)


def error_response(
    status: int,
    code: str,
    message: str,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A response in the common error shape."""
    error: dict[str, Any] = {"status": int(status), "code": code, "message": message}
    if detail is not None:
        error["detail"] = jsonable_encoder(detail)
    return JSONResponse({"error": error}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = HTTPStatus(exc.status_code)
    code = re.sub(r"[^a-z0-9]+", "_", status.phrase.lower()).strip("_")
    detail: Any = None
    if isinstance(exc.detail, str) and exc.detail != status.phrase:
        message = exc.detail
    else:
        message = _default_message(status, request)
        if not isinstance(exc.detail, str):
            detail = exc.detail
    return error_response(status, code, message, detail, exc.headers)


def _default_message(status: HTTPStatus, request: Request) -> str:
    if status is HTTPStatus.NOT_FOUND:
        return f"Nothing is served at {request.url.path}."
    if status is HTTPStatus.METHOD_NOT_ALLOWED:
        return f"{request.method} is not allowed on {request.url.path}."
    return f"{status.phrase}."


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    noun = "problem" if len(errors) == 1 else "problems"
    return error_response(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        "validation_error",
        f"The request is not valid ({len(errors)} {noun}; see detail).",
        detail=errors,
    )


class UnhandledErrorMiddleware:
    """Turns an exception no handler caught into a 500 in the common error shape, logged once.

    Starlette's own handler for `Exception` answers and then re-raises, so the server logs the
    traceback again and test clients raise; this middleware answers and stops there.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response_started = False

        async def send_tracking_start(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracking_start)
        except Exception:
            if response_started:
                raise
            logger.exception("Unhandled error answering %s %s", scope["method"], scope["path"])
            response = error_response(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "internal_error",
                "The server failed to answer this request; the error has been logged.",
            )
            await response(scope, receive, send)
