"""The FastAPI app factory. State (store, retriever, policies, metrics) is created in the lifespan.

uvicorn --factory service.app:create_app       # or: kbloop serve
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import KbloopError, error_body, response_for
from core.settings import Settings, get_settings
from rag.config import RagConfig
from rag.errors import IndexNotFound
from service.api import answers, chat, conversations, feedback, golden, health, models
from service.api.deps import AppState
from service.auth import Authenticator, is_loopback, load_tokens
from service.errors import PayloadTooLarge, ServiceError, ServiceErrorCode
from service.metrics import Metrics

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Any = None,
    extensions: Sequence[Callable[[FastAPI, AppState], None]] = (),
) -> FastAPI:
    """The kbloop HTTP API. `extensions` add to it before the middleware (the web UI: ui.server, a
    layer above, mounts itself this way); `embedder` lets tests share one loaded model."""
    settings = settings or get_settings()
    tokens = load_tokens(settings.tokens_file) if settings.tokens_file else {}
    auth = Authenticator(tokens, allow_anonymous=is_loopback(settings.host))
    if not tokens and not auth.local_mode:
        log.warning(
            "no KBLOOP_TOKENS_FILE and bound to %s (not loopback): every request but health and metrics "
            "will be refused (401); write a tokens file, or bind 127.0.0.1 for local single-user mode",
            settings.host,
        )
    state = AppState(settings=settings, metrics=Metrics(), auth=auth)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            await asyncio.to_thread(_start, state, embedder)
        except Exception as exc:  # keep serving /healthz and /readyz, which say what is wrong
            log.exception("kbloop failed to start")
            state.startup_error = f"{type(exc).__name__}: {exc}"
        # What startup built (torch, the model, the web UI: ~0.5 M objects) lives as long as the app.
        # Out of the collector's generations, a full collection no longer walks it: measured under the
        # feedback benchmark, each one paused the event loop for 100-400 ms, every second or so.
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()  # back under the collector: an app closed in a longer-lived process is freed
        if state.trainer is not None:
            from service.autostart import stop

            await asyncio.to_thread(stop, state.trainer)
        if state.runtime is not None:
            state.runtime.close()
        if state.writer is not None:
            state.writer.close()  # commits what is queued
        if state.store is not None:
            state.store.close()
        if state.data_lock is not None:
            state.data_lock.release()

    app = FastAPI(title="kbloop", version="0.1.0", lifespan=lifespan)
    app.state.kbloop = state
    # routes match in order: the busiest first
    for module in (feedback, chat, models, health, answers, conversations, golden):
        app.include_router(module.router)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    for extend in extensions:
        extend(app, state)
    _install_error_handlers(app, state)
    _install_metrics_middleware(app, state)
    app.add_middleware(SingleQueryValues, skip="/ui")
    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_kb * 1024,
        # the UI's document uploads may be as large as ingest accepts (plus multipart framing)
        wider={UI_UPLOAD_PATH: int(settings.max_file_mb * 1024 * 1024) + UPLOAD_FRAMING},
    )
    return app


def _start(state: AppState, embedder: Any) -> None:
    from feedback.group_commit import GroupCommit
    from feedback.store import Store
    from rag.search import Retriever
    from registry.loading import base_model_path
    from registry.versions import ModelDirectory
    from service.answering import Answerer
    from service.datalock import hold_shared
    from service.runtime import PolicyRuntime

    settings = state.settings
    # shared with other servers; `kbloop restore` refuses while a server holds it (service.datalock)
    state.data_lock = hold_shared(settings.data_dir)
    state.store = Store(settings.database_path)
    state.writer = GroupCommit(state.store)
    state.retriever = Retriever(
        settings.resolved_index_dir, RagConfig.from_settings(settings), embedder=embedder
    )
    try:
        state.retriever.current()
    except IndexNotFound as exc:
        log.warning("%s: answers will fail until `kbloop ingest` has run", exc)
    directory = ModelDirectory(settings.models_dir)
    directory.ensure_base(base_model_path(settings.model, settings.models_dir))
    from registry.registry import Registry

    Registry(settings.models_dir)  # re-mirrors the aliases a crash may have left behind the registry
    runtime = PolicyRuntime(directory, settings)
    runtime.engine(runtime.resolve("champion"))
    state.runtime = runtime
    state.metrics.track_engine(runtime.queue_depth, runtime.active)
    state.answerer = Answerer(settings, state.retriever, runtime, state.store, state.metrics)
    if settings.trainer_autostart:
        from service.autostart import start

        state.trainer = start(settings)


def _install_error_handlers(app: FastAPI, state: AppState) -> None:
    def respond(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        state.metrics.errors.labels(code).inc()
        return JSONResponse(error_body(code, message), status_code=status, headers=headers)

    @app.exception_handler(KbloopError)
    async def named_error(_: Request, exc: KbloopError) -> JSONResponse:
        """Every named error (service, retrieval, store, registry, trainer): its class says how."""
        status, body, headers = response_for(exc)
        if status >= 500 and not isinstance(exc, ServiceError):
            log.error("%s failed: %s", type(exc).__module__.split(".")[0], exc.message)
        state.metrics.errors.labels(body["error"]["code"]).inc()
        return JSONResponse(body, status_code=status, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
        return respond(422, ServiceErrorCode.INVALID_REQUEST.value, "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8...): invalid, like bad JSON
            message = f"{exc.detail}: send the body as UTF-8 JSON"
            return respond(422, ServiceErrorCode.INVALID_REQUEST.value, message)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return respond(exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return respond(500, ServiceErrorCode.INTERNAL.value, "internal error; the server log has the details")


def _install_metrics_middleware(app: FastAPI, state: AppState) -> None:
    app.add_middleware(RequestMetrics, state=state)


class RequestMetrics:
    """Request latency by route, method and status (plain ASGI: BaseHTTPMiddleware costs ~1 ms a call)."""

    def __init__(self, app: ASGIApp, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            self.state.metrics.request_latency.labels(path, scope.get("method", ""), str(status)).observe(
                time.perf_counter() - started
            )


class SingleQueryValues:
    """422 for an API request that gives a query parameter twice (`?kind=sft&kind=thumbs`): every API
    parameter takes one value, and FastAPI would silently keep the last. Paths under `skip` (the web
    UI, Gradio's own parameters) are left alone."""

    def __init__(self, app: ASGIApp, skip: str) -> None:
        self.app = app
        self.skip = skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = scope.get("query_string", b"") if scope["type"] == "http" else b""
        if b"&" in query and not str(scope.get("path", "")).startswith(self.skip):
            names = [name for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True)]
            repeated = sorted({name for name in names if names.count(name) > 1})
            if repeated:
                message = f"give each query parameter once: {', '.join(repeated)} appears more than once"
                await JSONResponse(error_body("invalid_request", message), status_code=422)(
                    scope, receive, send
                )
                return
        await self.app(scope, receive, send)


UI_UPLOAD_PATH = "/ui/gradio_api/upload"
UPLOAD_FRAMING = 64 * 1024


class BodyLimit:
    """413 for request bodies over `limit` bytes (or the `wider` limit of a path prefix), by
    Content-Length or while the body streams in."""

    def __init__(self, app: ASGIApp, limit: int, wider: dict[str, int] | None = None) -> None:
        self.app = app
        self.default = limit
        self.wider = wider or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        limit = next((n for prefix, n in self.wider.items() if path.startswith(prefix)), self.default)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            response = JSONResponse(
                error_body("payload_too_large", f"the request body is over {limit // 1024} KB"),
                status_code=413,
            )
            await response(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the request body is over {limit // 1024} KB")
            return message

        await self.app(scope, limited, send)
