from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from tests.service.conftest import EMPLOYEE, ENGINEER, OPERATOR, PARKING, UNCOVERED, ask

EMP = {"Authorization": f"Bearer {EMPLOYEE}"}
ENG = {"Authorization": f"Bearer {ENGINEER}"}
OPS = {"Authorization": f"Bearer {OPERATOR}"}


def answer_id(client: TestClient, headers: dict[str, str] | None = None) -> str:
    body = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=4), headers=headers or {}).json()
    return str(body["kbloop"]["answer_id"])


def test_votes_change_with_history_and_validation(client: TestClient) -> None:
    aid = answer_id(client)
    up = client.post(f"/api/answers/{aid}/vote", json={"value": "up"})
    assert up.status_code == 200 and up.json()["value"] == "up"
    down_vote = {"value": "down", "reasons": ["incorrect", "outdated"], "comment": "wrong price"}
    down = client.post(f"/api/answers/{aid}/vote", json=down_vote)
    assert down.json()["value"] == "down" and down.json()["reasons"] == ["incorrect", "outdated"]
    store = client.app.state.kbloop.store  # type: ignore[attr-defined]
    assert [e.value for e in store.vote_history(aid)] == ["up", "down"]
    assert store.get_vote(aid, "local").value == "down"
    bad_votes = [
        {"value": "sideways"},
        {"value": "up", "reasons": ["incorrect"]},
        {"value": "down", "reasons": ["boring"]},
        {"value": "down", "comment": "x" * 2001},
    ]
    for bad in bad_votes:
        response = client.post(f"/api/answers/{aid}/vote", json=bad)
        assert response.status_code == 422, (bad, response.text)
        assert "error" in response.json()
    missing = client.post("/api/answers/nope/vote", json={"value": "up"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"


def test_idempotent_retries_and_conflicts(client: TestClient) -> None:
    aid = answer_id(client)
    first = client.post(f"/api/answers/{aid}/vote", json={"value": "down", "reasons": ["too_long"]},
                        headers={"Idempotency-Key": "k-1"})  # fmt: skip
    again = client.post(f"/api/answers/{aid}/vote", json={"value": "down", "reasons": ["too_long"]},
                        headers={"Idempotency-Key": "k-1"})  # fmt: skip
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    store = client.app.state.kbloop.store  # type: ignore[attr-defined]
    assert len(store.vote_history(aid)) == 1
    conflict = client.post(f"/api/answers/{aid}/vote", json={"value": "up", "idempotency_key": "k-1"})
    assert conflict.status_code == 409


def test_only_the_asker_or_an_operator_gives_feedback(make_client: Any, tokens_file: Path) -> None:
    client = make_client(tokens_file=tokens_file)
    aid = answer_id(client, EMP)
    assert client.post(f"/api/answers/{aid}/vote", json={"value": "up"}, headers=ENG).status_code == 404
    assert client.post(f"/api/answers/{aid}/vote", json={"value": "up"}, headers=EMP).status_code == 200
    assert client.post(f"/api/answers/{aid}/vote", json={"value": "up"}).status_code == 401
    fix = client.post(
        f"/api/answers/{aid}/correction", json={"text": "Permits cost $45 a month [1]."}, headers=EMP
    )
    assert fix.status_code == 200 and fix.json()["text"].startswith("Permits")
    assert client.post(f"/api/answers/{aid}/correction", json={"text": ""}, headers=EMP).status_code == 422
    assert (
        client.post(f"/api/answers/{aid}/correction", json={"text": "x" * 9000}, headers=EMP).status_code
        == 422
    )
    assert client.get("/api/stats", headers=EMP).status_code == 403
    assert client.get("/api/export?kind=sft", headers=EMP).status_code == 403
    assert client.get("/api/stats").status_code == 401


def test_write_requests_are_checked_like_any_other(client: TestClient) -> None:
    """The vote and correction endpoints read their request by hand (the hot path): same checks,
    same error body, same metrics as the FastAPI-parsed endpoints."""
    aid = answer_id(client)
    vote = f"/api/answers/{aid}/vote"

    def error(response: Any, status: int, code: str, *words: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
        for word in words:
            assert word in response.json()["error"]["message"]

    error(client.post(vote, content=b'{"value": "up"'), 422, "invalid_request", "JSON")
    error(client.post(vote, content=b'{"value": "up"}', headers={"Content-Type": "text/plain"}), 422,
          "invalid_request", "application/json")  # fmt: skip
    error(client.post(vote, json={"value": "sideways"}), 422, "invalid_request", "value")
    error(client.post(vote, json={"value": "up", "extra": 1}), 422, "invalid_request", "extra")
    error(client.post(vote, json=["up"]), 422, "invalid_request")
    error(client.post(vote, json={"value": "up"}, headers={"Idempotency-Key": "k" * 129}), 422,
          "invalid_request", "Idempotency-Key")  # fmt: skip
    error(client.post(vote, json={"value": "up", "comment": "x" * 300_000}), 413, "payload_too_large")
    error(client.post(f"/api/answers/{aid}/correction", json={}), 422, "invalid_request", "text")
    ok = client.post(vote, json={"value": "up"}, headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200 and ok.json()["answer_id"] == aid
    metrics = client.get("/metrics").text
    assert 'route="/api/answers/{answer_id}/vote"' in metrics and 'status="422"' in metrics
    schema = client.get("/openapi.json").json()["paths"]["/api/answers/{answer_id}/vote"]["post"]
    assert schema["requestBody"]["content"]["application/json"]["schema"]["required"] == ["value"]
    assert {p["name"] for p in schema["parameters"]} == {"answer_id", "Idempotency-Key"}
    chat = client.get("/openapi.json").json()["paths"]["/v1/chat/completions"]["post"]
    assert schema["security"] == chat["security"] == [{"HTTPBearer": []}]  # the token, as elsewhere


def test_concurrent_votes_share_commits_and_each_is_stored_once(client: TestClient) -> None:
    from concurrent.futures import ThreadPoolExecutor

    ids = [answer_id(client) for _ in range(3)]
    writer = client.app.state.kbloop.writer  # type: ignore[attr-defined]

    def post(i: int) -> Any:
        aid, value = ids[i % 3], ("up", "down")[i % 2]
        return client.post(f"/api/answers/{aid}/vote", json={"value": value, "comment": f"c{i}"},
                           headers={"Idempotency-Key": f"k-{i}"})  # fmt: skip

    with ThreadPoolExecutor(8) as pool:
        first = list(pool.map(post, range(60)))
        again = list(pool.map(post, range(60)))  # every request retried
    assert all(r.status_code == 200 for r in first + again)
    assert [r.json() for r in first] == [r.json() for r in again]
    store = client.app.state.kbloop.store  # type: ignore[attr-defined]
    assert sum(len(store.vote_history(aid)) for aid in ids) == 60
    assert writer.calls == 120


def test_compare_choose_reveal_and_export(make_client: Any, tokens_file: Path, tmp_path: Path) -> None:
    client = make_client(tokens_file=tokens_file)
    pair = client.post("/api/compare", json={"question": PARKING, "max_tokens": 6}, headers=EMP)
    assert pair.status_code == 200, pair.text
    body = pair.json()
    assert body["left"]["answer_id"] != body["right"]["answer_id"]
    assert "model_version" not in json.dumps(body)  # anonymous until the vote
    cid = body["comparison_id"]
    assert client.post(f"/api/compare/{cid}/choice", json={"choice": "A"}, headers=ENG).status_code == 404
    chosen = client.post(f"/api/compare/{cid}/choice", json={"choice": "A"}, headers=EMP)
    assert chosen.status_code == 200 and chosen.json()["choice"] == "A"
    assert chosen.json()["left_model_version"] == chosen.json()["right_model_version"] == "v0001"
    assert client.post(f"/api/compare/{cid}/choice", json={"choice": "A"}, headers=EMP).status_code == 200
    assert client.post(f"/api/compare/{cid}/choice", json={"choice": "B"}, headers=EMP).status_code == 409
    assert client.post("/api/compare/nope/choice", json={"choice": "A"}, headers=EMP).status_code == 404
    assert client.post("/api/compare", json={"question": UNCOVERED}, headers=EMP).status_code == 422
    assert client.post("/api/compare", json={}, headers=EMP).status_code == 422

    stats = client.get("/api/stats", headers=OPS).json()
    assert stats["win_rates"] == [] or stats["win_rates"][0]["a"] == "v0001"
    assert stats["position_bias"]["decisive"] == 1
    exported = client.get("/api/export?kind=preferences", headers=OPS)
    assert exported.status_code == 200 and exported.headers["X-Kbloop-Written"] == "1"
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert (
        set(rows[0]) == {"prompt", "chosen", "rejected", "restricted_groups"} and PARKING in rows[0]["prompt"]
    )
    assert rows[0]["restricted_groups"] == []  # the parking policy is public
    path = tmp_path / "prefs.jsonl"
    path.write_text(exported.text)
    from datasets import load_dataset

    dataset = load_dataset("json", data_files=str(path), split="train")
    assert dataset.column_names == ["prompt", "chosen", "rejected", "restricted_groups"] and len(dataset) == 1
    csv = client.get("/api/export?kind=comparisons.csv", headers=OPS)
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert client.get("/api/export?kind=nonsense", headers=OPS).status_code == 422


def test_pair_positions_follow_the_random_draw(client: TestClient) -> None:
    from service.auth import LOCAL_ANONYMOUS
    from service.comparing import create_pair

    state = client.app.state.kbloop  # type: ignore[attr-defined]
    temperatures = []
    for seed in range(6):
        rng = random.Random(seed)
        expect_first_left = random.Random(seed).random() < 0.5
        question = [{"role": "user", "content": PARKING}]
        pair = asyncio.run(create_pair(state.answerer, LOCAL_ANONYMOUS, question, max_tokens=3, rng=rng))
        left = state.store.get_answer(pair.left.answer_id).generation["temperature"]
        temperatures.append(left)
        assert (left == 0.3) == expect_first_left
    assert set(temperatures) == {0.3, 0.9}  # both sides were shown on the left


def test_kbloop_export_cli(client: TestClient, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from cli.app import app

    aid = answer_id(client)
    client.post(f"/api/answers/{aid}/vote", json={"value": "down", "reasons": ["incomplete"]})
    client.post(f"/api/answers/{aid}/correction", json={"text": "Permits cost 45 dollars per month [1]."})
    runner = CliRunner()
    out = tmp_path / "thumbs.jsonl"
    result = runner.invoke(app, ["export", "thumbs", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert (
        len(rows) == 1
        and rows[0]["label"] is False
        and set(rows[0]) == {"prompt", "completion", "label", "restricted_groups"}
    )
    sft = runner.invoke(app, ["export", "sft"])
    assert sft.exit_code == 0 and "45 dollars" in sft.stdout
    assert json.loads(sft.stdout.splitlines()[0])["messages"][-1]["role"] == "assistant"
    bad = runner.invoke(app, ["export", "nonsense"])
    assert bad.exit_code == 2 and "unknown export" in bad.output


def test_an_answer_is_open_to_its_author_and_to_operators_only() -> None:
    from service.auth import Identity

    assert Identity("ana").may_access("ana")
    assert not Identity("ana").may_access("bo")
    assert Identity("root", role="operator").may_access("bo")
