"""The web UI (Gradio Blocks) mounted in the FastAPI app at /ui. Holds no business logic."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.api.deps import AppState


def mount(app: FastAPI, state: AppState) -> None:
    """Mount the UI at /ui (placeholder until the UI lands)."""
