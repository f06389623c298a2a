"""The registry's operator API: roles, promote/rollback/canary over HTTP, errors as 4xx."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from registry.versions import ModelVersion
from tests.service.conftest import EMPLOYEE, OPERATOR, PARKING, ask
from tests.service.test_versions import save_lora

OP = {"Authorization": f"Bearer {OPERATOR}"}
EMP = {"Authorization": f"Bearer {EMPLOYEE}"}


def test_operator_endpoints(make_client: Any, tiny_model_dir: Path, tokens_file: Path) -> None:
    client = make_client(tokens_file=tokens_file)
    runtime = client.app.state.kbloop.runtime
    root = runtime.models.root
    save_lora(tiny_model_dir, root / "versions" / "v0002" / "adapter")
    runtime.models.add(ModelVersion(id="v0002", base=str(tiny_model_dir), adapter="adapter", parent="v0001"))
    broken = root / "versions" / "v0003" / "adapter"
    broken.mkdir(parents=True)
    (broken / "adapter_config.json").write_text("{oops")
    runtime.models.add(ModelVersion(id="v0003", base=str(tiny_model_dir), adapter="adapter", parent="v0001"))

    for method, path in (
        ("get", "/api/models"),
        ("post", "/api/models/v0002/promote"),
        ("post", "/api/models/rollback"),
        ("post", "/api/models/canary"),
        ("get", "/api/models/history"),
    ):
        assert client.request(method, path, json={"reason": "x"}).status_code == 401
        assert client.request(method, path, json={"reason": "x"}, headers=EMP).status_code == 403

    listed = client.get("/api/models", headers=OP).json()
    assert listed["aliases"] == {"champion": "v0001"} and {v["id"] for v in listed["versions"]} >= {"v0002"}
    # no evaluation report: the gate fails, promotion needs an override
    failed = client.post("/api/models/v0002/promote", json={"reason": "try"}, headers=OP)
    assert failed.status_code == 409 and failed.json()["error"]["code"] == "gate_failed"
    assert client.post("/api/models/v0099/promote", json={"reason": "x"}, headers=OP).status_code == 404
    assert client.post("/api/models/v0002/promote", json={"reason": ""}, headers=OP).status_code == 422
    corrupt = client.post("/api/models/v0003/promote", json={"reason": "x", "override": True}, headers=OP)
    assert corrupt.status_code == 422 and corrupt.json()["error"]["code"] == "not_promotable"

    done = client.post("/api/models/v0002/promote", json={"reason": "ok", "override": True}, headers=OP)
    assert done.status_code == 200 and done.json()["to_version"] == "v0002" and done.json()["override"]
    assert json.loads((root / "aliases.json").read_text())["champion"] == "v0002"
    answer = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=2), headers=EMP).json()
    assert answer["kbloop"]["model_version"] == "v0002"

    canary = client.post(
        "/api/models/canary", json={"version": "v0001", "share": 0.2, "reason": "old"}, headers=OP
    )
    assert canary.status_code == 200 and canary.json()["detail"]["share"] == 0.2
    assert client.post("/api/models/canary", json={"share": 2, "reason": "x"}, headers=OP).status_code == 422

    back = client.post("/api/models/rollback", json={"reason": "thumbs down"}, headers=OP)
    assert back.status_code == 200 and back.json()["to_version"] == "v0001"
    history = client.get("/api/models/history?alias=champion", headers=OP).json()["events"]
    assert [e["action"] for e in history] == ["rollback", "promote", "adopt"]
    assert history[1]["actor"] == "olga" and history[1]["reason"] == "ok"
    shown = client.get("/api/models/v0002", headers=OP).json()
    assert shown["gate"]["passed"] is False and shown["parent"] == "v0001"
