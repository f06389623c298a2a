from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.settings import Settings
from tests.service.tiny import save_tiny_chat_model

EMPLOYEE = "employee-token-0123456789"
ENGINEER = "engineer-token-0123456789"
OPERATOR = "operator-token-0123456789"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture
def tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.json"
    path.write_text(
        json.dumps(
            {
                EMPLOYEE: {"user": "erin", "role": "employee"},
                ENGINEER: {"user": "ed", "role": "employee", "groups": ["engineering"]},
                OPERATOR: {"user": "olga", "role": "operator"},
            }
        )
    )
    return path


@pytest.fixture
def make_settings(tmp_path: Path, fixture_index: Path, tiny_model_dir: Path) -> Callable[..., Settings]:
    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "data_dir": tmp_path / "var",
            "index_dir": fixture_index,
            "model": str(tiny_model_dir),
            "device": "cpu",
            "max_tokens_default": 12,
            "request_timeout_s": 60,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
def make_client(make_settings: Callable[..., Settings], embedder: Any) -> Iterator[Callable[..., TestClient]]:
    from ui.server import create_app

    clients: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides), embedder=embedder))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


PARKING = "How much does a parking permit cost per month?"
UNCOVERED = "What is the stock option vesting schedule?"


def ask(question: str, **extra: Any) -> dict[str, Any]:
    return {"model": "champion", "messages": [{"role": "user", "content": question}], **extra}
