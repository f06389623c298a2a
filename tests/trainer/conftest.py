from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.tiny import save_tiny_chat_model


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama chat model folder (random weights, small BPE tokenizer): the policy base in tests."""
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-base"))
