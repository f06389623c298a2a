"""The shipped SmolLM2-135M-Instruct answering from the fixture corpus, end to end through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings


@pytest.fixture(scope="session")
def real_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled GGUF converted once per test session (~25 s)."""
    from registry.loading import base_model_path

    models = tmp_path_factory.mktemp("real-models")
    base_model_path("", models)
    return models


def test_shipped_model_answers_with_the_right_citation(
    real_models_dir: Path, fixture_index: Path, tmp_path: Path, embedder: Any
) -> None:
    from ui.server import create_app

    model = real_models_dir / "base" / "smollm2-135m-instruct"
    settings = Settings(data_dir=tmp_path / "var", index_dir=fixture_index, model=str(model), device="cpu")
    with TestClient(create_app(settings, embedder=embedder)) as client:
        body = client.post(
            "/v1/chat/completions",
            json={
                "messages": [{"role": "user", "content": "How much does a parking permit cost per month?"}],
                "temperature": 0,
                "max_tokens": 48,
            },
        ).json()
    answer = body["choices"][0]["message"]["content"]
    assert "45" in answer, answer
    assert [c["source"] for c in body["kbloop"]["citations"]][:1] == ["policies/parking.md"], answer
