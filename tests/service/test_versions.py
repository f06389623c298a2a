from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from registry.errors import ModelNotFound
from registry.versions import ModelDirectory, ModelVersion
from tests.service.conftest import PARKING, ask


def test_directory_creates_the_base_version_and_resolves_aliases(tmp_path: Path) -> None:
    models = ModelDirectory(tmp_path / "models")
    base = models.ensure_base("/some/base")
    assert base.id == "v0001" and models.aliases() == {"champion": "v0001"}
    models.add(ModelVersion(id="v0002", base="/some/base", adapter="adapter", parent="v0001"))
    models.set_alias("candidate", "v0002")
    assert models.resolve("candidate").id == "v0002" and models.resolve("v0001").base == "/some/base"
    with pytest.raises(ModelNotFound, match="candidate, champion, v0001, v0002"):
        models.resolve("v0003")
    with pytest.raises(ModelNotFound):
        models.set_alias("canary", "v0009")
    (tmp_path / "models" / "versions" / "junk").mkdir()
    (tmp_path / "models" / "versions" / "junk" / "manifest.json").write_text("{not json")
    assert [v.id for v in models.versions()] == ["v0001", "v0002"]  # a broken folder is not a version
    assert json.loads((tmp_path / "models" / "aliases.json").read_text())["candidate"] == "v0002"


def save_lora(tiny_model_dir: Path, target: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(5)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)  # a trained-looking adapter: it changes the outputs
    peft_model.save_pretrained(target)


def test_a_version_with_a_lora_adapter_is_served(make_client: Any, tiny_model_dir: Path) -> None:
    client = make_client(answer_checks=False)  # the raw outputs of the two versions, to compare them
    state = client.app.state.kbloop
    root = state.runtime.models.root
    save_lora(tiny_model_dir, root / "versions" / "v0002" / "adapter")
    tuned_version = ModelVersion(id="v0002", base=str(tiny_model_dir), adapter="adapter", parent="v0001")
    state.runtime.models.add(tuned_version)
    state.runtime.models.set_alias("candidate", "v0002")
    body = ask(PARKING, temperature=0, max_tokens=12)
    base = client.post("/v1/chat/completions", json=body).json()
    tuned = client.post("/v1/chat/completions", json={**body, "model": "candidate"}).json()
    assert tuned["kbloop"]["model_version"] == "v0002" and base["kbloop"]["model_version"] == "v0001"
    assert tuned["choices"][0]["message"]["content"] != base["choices"][0]["message"]["content"]
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listed["v0002"]["kbloop"]["loaded"] and listed["candidate"]["kbloop"]["alias_of"] == "v0002"


def test_a_broken_adapter_is_a_clear_503(make_client: Any, tiny_model_dir: Path) -> None:
    client = make_client()
    models = client.app.state.kbloop.runtime.models
    broken = models.root / "versions" / "v0003" / "adapter"
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text("{oops")
    models.add(ModelVersion(id="v0003", base=str(tiny_model_dir), adapter="adapter"))
    response = client.post("/v1/chat/completions", json=ask(PARKING, model="v0003"))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "model_unavailable" and "adapter" in error["message"]
    assert client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=2)).status_code == 200
