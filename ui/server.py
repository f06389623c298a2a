"""The app `kbloop serve` serves: the HTTP API (service.app) with the web UI mounted at /ui."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from service.app import create_app as create_api

if TYPE_CHECKING:
    from fastapi import FastAPI

    from core.settings import Settings
    from service.api.deps import AppState

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, embedder: Any = None) -> FastAPI:
    """The API and the web UI; without the `ui` extra (gradio), the API alone, with a warning."""
    return create_api(settings, embedder=embedder, extensions=(mount_ui,))


def mount_ui(app: FastAPI, state: AppState) -> None:
    try:
        from ui.app import mount
    except ImportError as exc:  # the `ui` extra (gradio) is not installed: the API still serves
        log.warning("web UI disabled (%s); install it with: pip install -e '.[ui]'", exc)
        return
    mount(app, state)
