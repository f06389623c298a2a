"""What the API's OpenAPI schema says about its answers: the error body, and which error statuses each
route may give, so clients (and tests/service/test_fuzz.py) can rely on every documented status and
body. The statuses themselves come from the named errors (service.app maps them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error: `{"error": {"code": ..., "message": ...}}`."""

    error: ErrorDetail


WHY = {
    401: "No bearer token, or an unknown one.",
    403: "The token is not an operator's.",
    404: "No such answer, comparison, conversation or model version.",
    409: "A conflict: an idempotency key reused for another request, a choice already made, a failed gate.",
    413: "The request body is over KBLOOP_MAX_BODY_KB.",
    422: "The request is invalid; the message says what to fix.",
    503: "Not ready (starting, no index, store busy) or the generation queue is full; see Retry-After.",
    504: "The generation outlived KBLOOP_REQUEST_TIMEOUT_S.",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for FastAPI: each status with the error body."""
    return {status: {"model": ErrorBody, "description": WHY[status]} for status in statuses}
