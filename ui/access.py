"""Who is using the UI, and what the app has ready: looked up on every event, never at mount time.

The app's state (answerer, store, retriever) is created in the FastAPI lifespan, after the UI is
mounted; the caller's identity comes from the access token typed at the top of the page (not needed
in local single-user mode: see service.auth).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.errors import Forbidden, NotReady

if TYPE_CHECKING:
    from feedback.store import Store
    from rag.search import Retriever
    from service.answering import Answerer
    from service.api.deps import AppState
    from service.auth import Identity


def identify(app: AppState, token: str | None, host: str | None = None) -> Identity:
    """The identity the token stands for (raises service.errors.Unauthorized). In local mode, the
    local operator when the request was addressed to a loopback host (service.auth): `host`, the
    request's Host header, defaults to that of the Gradio event being handled."""
    token = (token or "").strip()
    return app.auth.identify(
        f"Bearer {token}" if token else None, host if host is not None else request_host()
    )


def request_host() -> str | None:
    """The `Host` header of the request of the Gradio event being handled ("" when it sent none);
    None outside an event (a handler called in-process)."""
    from gradio.context import LocalContext

    request = LocalContext.request.get(None)
    if request is None:
        return None
    headers = getattr(request, "headers", None)
    return str(headers.get("host", "")) if headers is not None else ""


def operator(app: AppState, token: str | None, host: str | None = None) -> Identity:
    """The identity, which must be an operator's (raises Unauthorized or Forbidden)."""
    identity = identify(app, token, host)
    if not identity.is_operator:
        raise Forbidden(f"{identity.user} is not an operator: this needs an operator's access token")
    return identity


def _not_ready(app: AppState) -> NotReady:
    return NotReady(app.startup_error or "the service is still starting; try again in a few seconds")


def answerer(app: AppState) -> Answerer:
    if app.answerer is None:
        raise _not_ready(app)
    return app.answerer


def store(app: AppState) -> Store:
    if app.store is None:
        raise _not_ready(app)
    return app.store


def retriever(app: AppState) -> Retriever:
    if app.retriever is None:
        raise _not_ready(app)
    return app.retriever
