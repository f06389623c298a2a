"""The running server: canary routing (sticky per conversation) and promotion without a restart while
requests are in flight."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path
from typing import Any

import pytest

from registry.registry import Registry
from registry.versions import ModelVersion
from service.generation.llama_server import server_binary
from service.runtime import canary_bucket
from service.smoke import smoke_test
from tests.service.conftest import PARKING, ask
from tests.service.test_llamacpp import smol_tiny_dir, smol_tiny_gguf
from tests.service.test_versions import save_lora

__all__ = ["smol_tiny_dir", "smol_tiny_gguf"]  # session fixtures shared with tests/service/test_llamacpp.py


def add_tuned(client: Any, tiny_model_dir: Path) -> Registry:
    runtime = client.app.state.kbloop.runtime
    root = runtime.models.root
    save_lora(tiny_model_dir, root / "versions" / "v0002" / "adapter")
    runtime.models.add(ModelVersion(id="v0002", base=str(tiny_model_dir), adapter="adapter", parent="v0001"))
    return Registry(root)


def test_canary_gets_its_share_of_conversations_and_keeps_them(
    make_client: Any, tiny_model_dir: Path
) -> None:
    client = make_client()
    registry = add_tuned(client, tiny_model_dir)
    settings = client.app.state.kbloop.settings
    registry.set_canary("v0002", 0.5, actor="ana", reason="half", smoke=lambda v: smoke_test(v, settings))
    conversations = [f"conv-{i}" for i in range(12)]
    expected = {c: "v0002" if canary_bucket(c) < 0.5 else "v0001" for c in conversations}
    assert set(expected.values()) == {"v0001", "v0002"}  # both sides are exercised
    for _round in range(2):  # the same conversation lands on the same version every time
        for conversation in conversations:
            body = ask(PARKING, max_tokens=2, conversation_id=conversation)
            got = client.post("/v1/chat/completions", json=body).json()["kbloop"]["model_version"]
            assert got == expected[conversation]
    # an explicit version is never rerouted
    pinned = client.post(
        "/v1/chat/completions", json=ask(PARKING, max_tokens=2, model="v0001", conversation_id="conv-0")
    )
    assert pinned.json()["kbloop"]["model_version"] == "v0001"
    registry.set_canary(None, 0.0, actor="ana", reason="done")
    client.app.state.kbloop.runtime._share_read_at = float("-inf")  # skip the 1 s cache in the test
    for conversation in conversations:
        body = ask(PARKING, max_tokens=2, conversation_id=conversation)
        assert client.post("/v1/chat/completions", json=body).json()["kbloop"]["model_version"] == "v0001"


def test_promotion_under_concurrent_load_fails_no_request(make_client: Any, tiny_model_dir: Path) -> None:
    client = make_client()
    registry = add_tuned(client, tiny_model_dir)
    settings = client.app.state.kbloop.settings

    def one(i: int) -> tuple[int, str]:
        response = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=16, stream=False))
        return response.status_code, response.json().get("kbloop", {}).get("model_version", "")

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        first = [pool.submit(one, i) for i in range(16)]
        registry.promote(
            "v0002", actor="ana", reason="hot swap", override=True, smoke=lambda v: smoke_test(v, settings)
        )
        second = [pool.submit(one, i) for i in range(16)]
        results = [f.result() for f in first + second]
    assert all(status == 200 for status, _ in results), results
    assert {version for _, version in results} <= {"v0001", "v0002"}
    assert all(
        version == "v0002" for _, version in [f.result() for f in second]
    )  # new requests: new champion
    after = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=2)).json()
    assert after["kbloop"]["model_version"] == "v0002"
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["champion"]["kbloop"]["alias_of"] == "v0002"


@pytest.mark.skipif(server_binary() is None, reason="llama-server is not installed (make install builds it)")
def test_promotion_under_concurrent_load_on_llamacpp_fails_no_request(
    make_client: Any, smol_tiny_dir: Path, smol_tiny_gguf: Path, tmp_path: Path
) -> None:
    """The same hot swap on the llama.cpp backend: the promoted version needs a new llama-server process
    (its adapter was not loaded); requests in flight finish on the old one, which is then stopped."""
    gguf_dir = tmp_path / "var" / "models" / "gguf"
    gguf_dir.mkdir(parents=True)
    os.link(smol_tiny_gguf, gguf_dir / smol_tiny_gguf.name)
    client = make_client(
        model=str(smol_tiny_dir),
        backend="llamacpp",
        llamacpp_slots=4,
        llamacpp_threads=1,
        llamacpp_context=1024,
    )
    runtime = client.app.state.kbloop.runtime
    assert runtime.backend == "llamacpp"
    backend = runtime._llamacpp.backends()[0]
    old = backend.server
    registry = add_tuned(client, smol_tiny_dir)
    settings = client.app.state.kbloop.settings

    def one(i: int) -> tuple[int, str]:
        response = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=16, stream=False))
        return response.status_code, response.json().get("kbloop", {}).get("model_version", "")

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        first = [pool.submit(one, i) for i in range(16)]
        registry.promote(
            "v0002", actor="ana", reason="hot swap", override=True, smoke=lambda v: smoke_test(v, settings)
        )
        second = [pool.submit(one, i) for i in range(16)]
        results = [f.result() for f in first + second]
    assert all(status == 200 for status, _ in results), results
    assert {version for _, version in results} <= {"v0001", "v0002"}
    assert all(version == "v0002" for _, version in [f.result() for f in second])
    assert backend.server is not old and backend.server is not None and backend.server.alive()
    deadline = time.monotonic() + 30
    while old is not None and old.alive() and time.monotonic() < deadline:  # drained, then stopped
        time.sleep(0.1)
    assert old is not None and not old.alive()
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert models["champion"]["kbloop"]["alias_of"] == "v0002"
