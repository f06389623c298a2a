"""Named registry errors; the API maps them to HTTP statuses, the CLI prints them and exits 2."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from core.errors import KbloopError


class RegistryErrorCode(StrEnum):
    UNKNOWN_VERSION = "unknown_version"
    NOT_PROMOTABLE = "not_promotable"
    GATE_FAILED = "gate_failed"
    CONFLICT = "conflict"
    NOTHING_TO_ROLL_BACK = "nothing_to_roll_back"
    INVALID = "invalid_request"
    MODEL_NOT_FOUND = "model_not_found"
    MODEL_UNAVAILABLE = "model_unavailable"
    SCHEMA_TOO_NEW = "schema_too_new"


class RegistryError(KbloopError):
    code: ClassVar[RegistryErrorCode] = RegistryErrorCode.INVALID
    status: ClassVar[int] = 422


class UnknownVersion(RegistryError):
    code = RegistryErrorCode.UNKNOWN_VERSION
    status = 404


class NotPromotable(RegistryError):
    """A failed, corrupt or unloadable version: it never becomes the champion."""

    code = RegistryErrorCode.NOT_PROMOTABLE
    status = 422


class GateFailed(RegistryError):
    """The evaluation gate failed and no override was given."""

    code = RegistryErrorCode.GATE_FAILED
    status = 409


class Conflict(RegistryError):
    """Another operator changed the alias first."""

    code = RegistryErrorCode.CONFLICT
    status = 409


class NothingToRollBack(RegistryError):
    code = RegistryErrorCode.NOTHING_TO_ROLL_BACK
    status = 409


class InvalidRequest(RegistryError):
    code = RegistryErrorCode.INVALID
    status = 422


class ModelNotFound(RegistryError):
    """No model version has this id or alias."""

    code = RegistryErrorCode.MODEL_NOT_FOUND
    status = 404


class ModelUnavailable(RegistryError):
    """A model (base or adapter) cannot be loaded or served here: what to install or fix."""

    code = RegistryErrorCode.MODEL_UNAVAILABLE
    status = 503


class SchemaTooNew(RegistryError):
    """registry.db was migrated by a newer kbloop; this one must not write into it."""

    code = RegistryErrorCode.SCHEMA_TOO_NEW
    status = 500
