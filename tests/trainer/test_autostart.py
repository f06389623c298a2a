"""The background trainer started beside the server, and stopped with it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from core.settings import Settings


def test_the_server_starts_and_stops_the_trainer(
    tmp_path: Path, fixture_index: Path, tiny_base: Path, embedder: Any
) -> None:
    from ui.server import create_app

    settings = Settings(
        data_dir=tmp_path / "var",
        index_dir=fixture_index,
        model=str(tiny_base),
        device="cpu",
        trainer_autostart=True,
        trainer_min_feedback=1000,
    )
    with TestClient(create_app(settings, embedder=embedder)) as client:
        proc = client.app.state.kbloop.trainer
        assert proc is not None and proc.poll() is None
        log = settings.data_dir / "trainer" / "worker.log"
        for _ in range(100):  # the worker announces itself once its CLI is up
            if "trainer watching" in log.read_text():
                break
            time.sleep(0.2)
        assert "trainer watching" in log.read_text()
    assert proc.poll() is not None  # stopped with the server
