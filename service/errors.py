"""Named service errors, each with a code and the HTTP status the API answers with."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from core.errors import KbloopError
from registry.errors import ModelNotFound, ModelUnavailable

__all__ = ["ModelNotFound", "ModelUnavailable"]  # the registry's: model versions and loading live there


class ServiceErrorCode(StrEnum):
    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    QUEUE_FULL = "queue_full"
    NOT_READY = "not_ready"
    GENERATION_TIMEOUT = "generation_timeout"
    GENERATION_FAILED = "generation_failed"
    INTERNAL = "internal_error"


class ServiceError(KbloopError):
    code: ClassVar[ServiceErrorCode] = ServiceErrorCode.INTERNAL
    status: ClassVar[int] = 500


class InvalidRequest(ServiceError):
    code = ServiceErrorCode.INVALID_REQUEST
    status = 422


class Unauthorized(ServiceError):
    code = ServiceErrorCode.UNAUTHORIZED
    status = 401


class Forbidden(ServiceError):
    code = ServiceErrorCode.FORBIDDEN
    status = 403


class NotFound(ServiceError):
    code = ServiceErrorCode.NOT_FOUND
    status = 404


class PayloadTooLarge(ServiceError):
    code = ServiceErrorCode.PAYLOAD_TOO_LARGE
    status = 413


class QueueFull(ServiceError):
    code = ServiceErrorCode.QUEUE_FULL
    status = 503


class NotReady(ServiceError):
    code = ServiceErrorCode.NOT_READY
    status = 503


class GenerationTimeout(ServiceError):
    code = ServiceErrorCode.GENERATION_TIMEOUT
    status = 504


class GenerationFailed(ServiceError):
    code = ServiceErrorCode.GENERATION_FAILED
    status = 500
