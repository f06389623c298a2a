"""The base of every named kbloop error, and what an HTTP caller is told about it.

Each package names its errors (rag/errors.py, feedback/errors.py, registry/errors.py, ...) as
subclasses of `KbloopError`, and each class says, once, how the API answers it: `status`, a
`retry_after` for the errors that pass by themselves, and a `hint` for an HTTP caller. The app has one
handler for all of them (service/app.py), the UI and the CLI print `message`.
"""

from __future__ import annotations

from typing import Any, ClassVar


class KbloopError(Exception):
    """`code`: what went wrong, stable for clients and scripts; `message`: what to do about it."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500  # the HTTP status the API answers with
    retry_after: int | None = None  # seconds a client should wait; None: retrying will not help
    hint: ClassVar[str] = ""  # added to the message for an HTTP caller

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if retry_after is not None:
            self.retry_after = retry_after


def error_body(code: str, message: str) -> dict[str, Any]:
    """The JSON body of every error the API answers."""
    return {"error": {"code": code, "message": message}}


def response_for(exc: KbloopError) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, body, headers) of the API's answer to a named error."""
    message = f"{exc.message}; {exc.hint}" if exc.hint else exc.message
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after is not None else {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return exc.status, error_body(str(exc.code), message), headers
