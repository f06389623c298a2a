"""UI fixtures: the service fixtures (tiny model, fixture index, settings) and a live server."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from core.settings import Settings
from tests.service.conftest import (  # noqa: F401  (fixtures, re-exported for tests/ui)
    client,
    make_client,
    make_settings,
    tiny_model_dir,
    tokens_file,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real browser (chromium) against a live server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Live:
    url: str
    app: Any  # the FastAPI app; app.state.kbloop is the AppState


@pytest.fixture
def make_live_server(
    make_settings: Callable[..., Settings],  # noqa: F811
    embedder: Any,
) -> Iterator[Callable[..., Live]]:
    """Start the whole app (API and UI) with uvicorn on a free loopback port, in a thread; `overrides`
    go to the settings."""
    import uvicorn

    from ui.server import create_app

    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**overrides: Any) -> Live:
        port = free_port()
        app = create_app(make_settings(port=port, **overrides), embedder=embedder)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.time() + 60
        while not server.started:
            assert thread.is_alive(), "the server stopped while starting"
            assert time.time() < deadline, "the server did not start within 60 s"
            time.sleep(0.05)
        assert app.state.kbloop.startup_error is None, app.state.kbloop.startup_error
        return Live(f"http://127.0.0.1:{port}", app)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(20)


@pytest.fixture
def live_server(make_live_server: Callable[..., Live]) -> Live:
    """The app as `make run` serves it: local, no tokens, the fixture index."""
    return make_live_server()
