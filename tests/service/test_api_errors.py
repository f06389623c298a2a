from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import EMPLOYEE, OPERATOR, PARKING, ask


def assert_error(response: Any, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    for word in words:
        assert word in error["message"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"messages": []}, ["messages"]),
        ({}, ["messages"]),
        ({"messages": [{"role": "robot", "content": "hi"}]}, ["role"]),
        ({"messages": [{"role": "user"}]}, ["content"]),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, ["last message"]),
        ({"messages": [{"role": "user", "content": "   "}]}, ["empty"]),
        (ask(PARKING, temperature=3), ["temperature"]),
        (ask(PARKING, max_tokens=0), ["max_tokens"]),
        (ask(PARKING, max_tokens=5000), ["at most 1024"]),
        (ask(PARKING, n=2), ["n"]),
        (ask(PARKING, conversation_id="has spaces"), ["conversation_id"]),
    ],
)
def test_invalid_requests_get_422(client: TestClient, body: dict[str, Any], words: list[str]) -> None:
    assert_error(client.post("/v1/chat/completions", json=body), 422, "invalid_request", *words)


def test_malformed_json_unknown_model_huge_body_and_unknown_routes(client: TestClient) -> None:
    bad_json = client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"Content-Type": "application/json"}
    )
    assert_error(bad_json, 422, "invalid_request")
    unknown = client.post("/v1/chat/completions", json=ask(PARKING, model="gpt-9"))
    assert_error(unknown, 404, "model_not_found", "champion", "v0001")
    huge = ask("x" * 300_000)
    assert_error(client.post("/v1/chat/completions", json=huge), 413, "payload_too_large")
    assert_error(client.get("/v1/nothing"), 404, "not_found")
    assert_error(client.get("/v1/chat/completions"), 405, "method_not_allowed")


def test_models_health_readiness_and_metrics(client: TestClient) -> None:
    models = client.get("/v1/models").json()
    ids = {m["id"]: m for m in models["data"]}
    assert ids["champion"]["kbloop"]["alias_of"] == "v0001" and ids["v0001"]["kbloop"]["loaded"]
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["index"]
    client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=3))
    client.post("/v1/chat/completions", json={"messages": []})
    metrics = client.get("/metrics").text
    for name in ("kbloop_request_seconds_bucket", "kbloop_time_to_first_token_seconds_bucket",
                 "kbloop_decode_tokens_per_second", "kbloop_retrieval_seconds_bucket", "kbloop_queue_depth",
                 "kbloop_refusals_total"):  # fmt: skip
        assert name in metrics
    assert 'kbloop_errors_total{code="invalid_request"} 1.0' in metrics


def test_not_ready_without_an_index(make_client: Any, tmp_path: Any) -> None:
    client = make_client(index_dir=tmp_path / "no-index")
    assert client.get("/readyz").status_code == 503
    assert_error(
        client.post("/v1/chat/completions", json=ask(PARKING)), 503, "index_not_found", "kbloop ingest"
    )


def test_tokens_roles_and_anonymous_mode(make_client: Any, tokens_file: Any) -> None:
    client = make_client(tokens_file=tokens_file)
    missing = client.post("/v1/chat/completions", json=ask(PARKING))
    assert_error(missing, 401, "unauthorized", "Bearer")
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    wrong = client.get("/v1/models", headers={"Authorization": "Bearer not-a-real-token-at-all"})
    assert_error(wrong, 401, "unauthorized")
    assert_error(client.get("/v1/models", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    employee = {"Authorization": f"Bearer {EMPLOYEE}"}
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    assert_error(client.get("/api/answers", headers=employee), 403, "forbidden")
    assert client.get("/api/answers", headers=operator).status_code == 200
    answer = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=3), headers=employee).json()
    answer_id = answer["kbloop"]["answer_id"]
    assert client.get(f"/api/answers/{answer_id}", headers=employee).json()["user_id"] == "erin"
    assert client.get(f"/api/answers/{answer_id}", headers=operator).status_code == 200
    listed = client.get("/api/answers", headers=operator).json()
    assert listed["total"] == 1 and listed["answers"][0]["answer_id"] == answer_id
    assert_error(client.get("/api/answers/nope", headers=operator), 404, "not_found")
    # bound to a non-loopback address with no tokens: nobody is anonymous
    exposed = make_client(host="0.0.0.0")
    assert_error(exposed.get("/v1/models"), 401, "unauthorized")


def test_full_queue_gets_503_with_retry_after(make_client: Any) -> None:
    client = make_client(queue_size=1, max_batch=1)
    engine = client.app.state.kbloop.runtime.engine(client.app.state.kbloop.runtime.resolve("champion"))
    release, entered = threading.Event(), threading.Event()

    def hold(*_: Any) -> None:
        entered.set()
        release.wait(30)

    hook = engine.model.register_forward_pre_hook(hold)
    try:
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(client.post, "/v1/chat/completions", json=ask(PARKING, max_tokens=2))
            assert entered.wait(30)  # the engine is busy with the first request
            queued = pool.submit(client.post, "/v1/chat/completions", json=ask(PARKING, max_tokens=2))
            deadline = threading.Event()
            while engine.stats().queue_depth < 1 and not deadline.wait(0.01):
                pass
            rejected = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=2))
            release.set()
            assert first.result(60).status_code == 200 and queued.result(60).status_code == 200
    finally:
        release.set()
        hook.remove()
    assert_error(rejected, 503, "queue_full", "retry")
    assert rejected.headers["Retry-After"] == "1"


def test_generation_error_is_a_5xx_and_the_server_keeps_serving(client: TestClient) -> None:
    engine = client.app.state.kbloop.runtime.engine(client.app.state.kbloop.runtime.resolve("champion"))
    calls = {"n": 0}

    def explode(*_: Any) -> None:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("CUDA out of memory (simulated)")

    hook = engine.model.register_forward_pre_hook(explode)
    try:
        failed = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=2))
        ok = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=2))
    finally:
        hook.remove()
    assert_error(failed, 500, "generation_failed", "out of memory")
    assert ok.status_code == 200


def test_a_generation_past_its_deadline_is_a_504(make_client: Any) -> None:
    client = make_client(request_timeout_s=0.001)
    assert_error(client.post("/v1/chat/completions", json=ask(PARKING)), 504, "generation_timeout")


def test_ui_uploads_get_the_ingest_size_limit_not_the_api_body_limit(
    make_client: Any, tokens_file: Path
) -> None:
    from ui.uploads import TOKEN_COOKIE

    client = make_client(tokens_file=tokens_file)
    client.cookies.set(TOKEN_COOKIE, OPERATOR)  # the upload route takes an operator's files only
    big = b"x" * (300 * 1024)  # over the 256 KB API limit, under the 20 MB file limit
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {OPERATOR}"}
    api = client.post("/v1/chat/completions", content=big, headers=headers)
    assert api.status_code == 413
    upload = client.post("/ui/gradio_api/upload", files={"files": ("notes.md", big, "text/markdown")})
    assert upload.status_code == 200, upload.text
