"""Errors as the person using the UI sees them: what went wrong and what to do, never a traceback.

The named errors of service/, feedback/ and rag/ carry messages written for users; anything else is
logged and shown as an internal error (Gradio would otherwise show the raw exception text).
Gradio renders an error toast's message as HTML, and messages quote what users typed or uploaded
(file names, ids): `toast` escapes them.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import gradio as gr

from feedback.errors import ConflictError, FeedbackError, InvalidInput, NotFoundError
from rag.errors import IndexNotFound, InvalidQuery, RagError
from service.errors import ServiceError

log = logging.getLogger(__name__)

INTERNAL = "Something went wrong on the server; the server log has the details."


def user_message(exc: BaseException) -> str:
    """The message to show for `exc` (logged here when it is the server's fault)."""
    from registry.errors import RegistryError

    if isinstance(exc, RegistryError):
        return exc.message
    if isinstance(exc, ServiceError):
        if exc.status >= 500:
            log.warning("UI request failed: %s", exc.message)
        return exc.message
    if isinstance(exc, NotFoundError | InvalidInput | ConflictError):
        return exc.message
    if isinstance(exc, FeedbackError):
        log.error("feedback store failed: %s", exc.message)
        return f"The feedback store failed ({exc.code.value}); try again shortly."
    if isinstance(exc, IndexNotFound):
        return f"{exc.message}; an operator must index the documents first."
    if isinstance(exc, InvalidQuery):
        return exc.message
    if isinstance(exc, RagError):
        log.error("retrieval failed: %s", exc.message)
        return exc.message
    log.error("unexpected UI error", exc_info=exc)
    return INTERNAL


def toast(message: str) -> gr.Error:
    """A `gr.Error` that shows `message` as text (Gradio renders a toast's message as HTML)."""
    import gradio as gr

    return gr.Error(html.escape(message, quote=False))


@contextmanager
def shown_to_user() -> Iterator[None]:
    """Turn any error raised inside into a `gr.Error` toast with `user_message`."""
    import gradio as gr

    try:
        yield
    except gr.Error:
        raise
    except Exception as exc:
        raise toast(user_message(exc)) from exc
