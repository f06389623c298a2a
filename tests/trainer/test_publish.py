"""trainer.publish: a finished run becomes the next model version, as a candidate the service can list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from registry.versions import ModelDirectory
from trainer import publish
from trainer.publish import next_version_id, publish_candidate


def adapter_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "run" / "output"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"r": 4}')
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def test_publish_candidate_adds_the_next_version_and_only_moves_the_candidate_alias(tmp_path: Path) -> None:
    models = ModelDirectory(tmp_path / "models")
    models.ensure_base("/models/base")
    adapter = adapter_folder(tmp_path)
    version = publish_candidate(
        models,
        base="/models/base",
        adapter=adapter,
        parent="v0001",
        run_dir=tmp_path / "run",
        report={"kl": 1.5},
    )
    assert version.id == "v0002" and version.status == "candidate" and version.parent == "v0001"
    folder = tmp_path / "models" / "versions" / "v0002"
    assert (folder / "adapter" / "adapter_model.safetensors").read_bytes() == b"weights"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["status"] == "candidate" and manifest["adapter"] == "adapter"
    assert manifest["base"] == "/models/base"
    training = json.loads((folder / "training.json").read_text())
    assert training["report"] == {"kl": 1.5} and training["run"] == str(tmp_path / "run")
    assert models.aliases() == {"champion": "v0001", "candidate": "v0002"}
    # what the service sees
    assert [v.id for v in models.versions()] == ["v0001", "v0002"]
    assert models.resolve("candidate").adapter_path(models.root) == folder / "adapter"


def test_a_leftover_partial_folder_is_not_a_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    models = ModelDirectory(tmp_path / "models")
    models.ensure_base("/models/base")
    adapter = adapter_folder(tmp_path)

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("killed while writing training.json")

    monkeypatch.setattr(publish, "write_json", crash)
    with pytest.raises(OSError):
        publish_candidate(models, base="b", adapter=adapter, parent="v0001", run_dir=tmp_path, report={})
    monkeypatch.undo()
    assert (tmp_path / "models" / "versions" / ".v0002.partial").is_dir()
    assert [v.id for v in models.versions()] == ["v0001"]
    assert models.aliases() == {"champion": "v0001"}
    assert next_version_id(models) == "v0002"

    version = publish_candidate(
        models, base="b", adapter=adapter, parent="v0001", run_dir=tmp_path, report={}
    )
    assert version.id == "v0002"
    assert not (tmp_path / "models" / "versions" / ".v0002.partial").exists()
    assert [v.id for v in models.versions()] == ["v0001", "v0002"]


def test_a_version_folder_without_manifest_still_takes_its_number(tmp_path: Path) -> None:
    models = ModelDirectory(tmp_path / "models")
    models.ensure_base("/models/base")
    # a version folder renamed into place, then a kill before its manifest was written
    (tmp_path / "models" / "versions" / "v0002").mkdir()
    assert next_version_id(models) == "v0003"
    version = publish_candidate(
        models, base="b", adapter=adapter_folder(tmp_path), parent="v0001", run_dir=tmp_path, report={}
    )
    assert version.id == "v0003" and models.resolve("candidate").id == "v0003"
