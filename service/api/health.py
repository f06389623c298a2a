"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel

from service.api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: str
    checks: dict[str, Any]
    error: str | None = None


@router.get(
    "/readyz",
    response_model=None,
    responses={
        200: {"model": Readiness, "description": "Ready: store, model and index."},
        503: {"model": Readiness, "description": "Not ready; `checks` and `error` say why."},
    },
)
def readyz(state: StateDep) -> dict[str, Any] | JSONResponse:
    checks: dict[str, Any] = {
        "store": state.store is not None,
        "model": bool(state.runtime and state.runtime.loaded()),
        "index": None,
    }
    if state.retriever is not None:
        try:
            checks["index"] = state.retriever.current().version
        except Exception as exc:  # no index yet, or a corrupt one: not ready, say why
            checks["index"] = None
            checks["index_error"] = str(exc)
    ready = bool(checks["store"] and checks["model"] and checks["index"])
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if state.startup_error:
        body["error"] = state.startup_error
    return body if ready else JSONResponse(body, status_code=503)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(state: StateDep) -> Response:
    return Response(state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")
