"""Named errors of the trainer, each with a stable code the CLI and the worker can report."""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from core.errors import KbloopError


class TrainerErrorCode(StrEnum):
    TRAINING_FAILED = "training_failed"
    INVALID_DATA = "invalid_data"


class TrainerError(KbloopError):
    """Base class: `code` says what went wrong, the message says what to do about it."""

    code: ClassVar[TrainerErrorCode] = TrainerErrorCode.TRAINING_FAILED


class DataError(TrainerError):
    """Training data cannot be read: a missing or empty file, a malformed line (the message names the
    file, the line and what is wrong), a feedback database that is not there."""

    code = TrainerErrorCode.INVALID_DATA
