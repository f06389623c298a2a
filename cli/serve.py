"""`kbloop serve`: run the API (and, once installed, the web UI) with uvicorn."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cli.errors import fail


def serve_command(
    host: Annotated[str | None, typer.Option(help="Bind address (default KBLOOP_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default KBLOOP_PORT, 8000).")] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the OpenAI-compatible API on http://HOST:PORT (health at /healthz, metrics at /metrics)."""
    from core.settings import get_settings

    settings = get_settings()
    updates = {k: v for k, v in (("host", host), ("port", port)) if v is not None}
    if updates:
        settings = settings.model_copy(update=updates)
    try:
        import uvicorn

        from service.auth import TokenFileError
        from ui.server import create_app
    except ImportError as exc:
        raise fail("missing_extra", f"{exc}; install with: pip install -e '.[serve]'") from exc
    try:
        app = create_app(settings)
    except TokenFileError as exc:
        raise fail("invalid_config", str(exc)) from exc
    print(f"kbloop serving on http://{settings.host}:{settings.port} (API docs at /docs)", file=sys.stderr)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=log_level, timeout_graceful_shutdown=10
    )
