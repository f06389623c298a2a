"""Who is using the UI, and what the app has ready: looked up on every event, never at mount time.

The app's state (answerer, store, retriever) is created in the FastAPI lifespan, after the UI is
mounted; the caller's identity comes from the access token typed at the top of the page (not needed
when the server runs locally without tokens).
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


def identify(app: AppState, token: str | None) -> Identity:
    """The identity the token stands for (raises service.errors.Unauthorized)."""
    token = (token or "").strip()
    return app.auth.identify(f"Bearer {token}" if token else None)


def operator(app: AppState, token: str | None) -> Identity:
    """The identity, which must be an operator's (raises Unauthorized or Forbidden)."""
    identity = identify(app, token)
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
