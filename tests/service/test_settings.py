from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings, get_settings
from rag.config import RagConfig
from tests.conftest import REPO


def test_env_overrides_and_rag_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KBLOOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("KBLOOP_FUSION", "weighted")
    monkeypatch.setenv("KBLOOP_CHUNK_MAX_TOKENS", "128")
    monkeypatch.setenv("KBLOOP_MAX_FILE_MB", "1")
    get_settings.cache_clear()
    settings = get_settings()
    assert settings.resolved_index_dir == tmp_path / "index"
    config = RagConfig.from_settings(settings)
    assert config.fusion == "weighted"
    assert config.chunking.max_tokens == 128
    assert config.max_file_bytes == 1024 * 1024


def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("KBLOOP_FUSION", "magic")
    with pytest.raises(ValidationError, match="fusion"):
        Settings()


def test_readme_documents_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    for name in Settings.model_fields:
        assert f"`KBLOOP_{name.upper()}`" in readme, f"README lacks KBLOOP_{name.upper()}"
