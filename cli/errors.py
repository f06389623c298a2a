"""The one way a `kbloop` command fails: `error [code]: message` on stderr, exit status 2."""

from __future__ import annotations

import typer

from core.errors import KbloopError

EXIT_ERROR = 2


def fail(error: KbloopError | str, message: str = "") -> typer.Exit:
    """Print a named error (or a code and a message) and return the exit to raise:
    `raise fail(exc) from None`, `raise fail("invalid_input", "...")`."""
    if isinstance(error, KbloopError):
        code, message = str(error.code), error.message
    else:
        code = error
    typer.echo(f"error [{code}]: {message}", err=True)
    return typer.Exit(EXIT_ERROR)
