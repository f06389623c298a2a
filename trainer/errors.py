"""Named errors of the trainer, each with a stable code the CLI and the worker can report."""

from __future__ import annotations

from enum import StrEnum


class TrainerErrorCode(StrEnum):
    TRAINING_FAILED = "training_failed"
    INVALID_DATA = "invalid_data"


class TrainerError(Exception):
    """Base class: `code` says what went wrong, the message says what to do about it."""

    code: TrainerErrorCode = TrainerErrorCode.TRAINING_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DataError(TrainerError):
    """Training data cannot be read: a missing or empty file, a malformed line (the message names the
    file, the line and what is wrong), a feedback database that is not there."""

    code = TrainerErrorCode.INVALID_DATA
