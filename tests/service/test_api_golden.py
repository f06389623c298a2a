"""`POST /api/golden` / `GET /api/golden`: an operator turns an answer and its correction into a golden
item of the deployment; roles, unknown answers, duplicates and bad input get their own statuses."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from feedback.golden import golden_set
from tests.service.conftest import EMPLOYEE, OPERATOR, PARKING, ask
from tests.service.test_api_errors import assert_error

AS_EMPLOYEE = {"Authorization": f"Bearer {EMPLOYEE}"}
AS_OPERATOR = {"Authorization": f"Bearer {OPERATOR}"}


def answered(client: TestClient, question: str, correction: str | None) -> dict[str, Any]:
    """An employee's answer (and its correction)."""
    reply = client.post("/v1/chat/completions", json=ask(question, max_tokens=8), headers=AS_EMPLOYEE)
    assert reply.status_code == 200, reply.text
    answer = reply.json()["kbloop"]
    if correction is not None:
        fixed = client.post(
            f"/api/answers/{answer['answer_id']}/correction", json={"text": correction}, headers=AS_EMPLOYEE
        )
        assert fixed.status_code == 200, fixed.text
    return dict(answer)


def test_an_operator_turns_a_corrected_answer_into_a_golden_item(
    make_client: Callable[..., TestClient], tokens_file: Path, tmp_path: Path
) -> None:
    client = make_client(tokens_file=tokens_file, refusal_threshold=0.0)
    golden_path = tmp_path / "var" / "golden.jsonl"
    answer = answered(client, PARKING, "A parking permit costs 40 dollars a month [1].")
    client.post(
        f"/api/answers/{answer['answer_id']}/correction",
        json={"text": "Parking permits cost 45 dollars a month [1]."},  # the newest correction wins
        headers=AS_EMPLOYEE,
    )
    body = {"answer_id": answer["answer_id"]}

    assert_error(client.post("/api/golden", json=body), 401, "unauthorized")
    assert_error(client.post("/api/golden", json=body, headers=AS_EMPLOYEE), 403, "forbidden")
    assert not golden_path.exists()

    created = client.post("/api/golden", json=body, headers=AS_OPERATOR)
    assert created.status_code == 200, created.text
    item = created.json()["item"]
    assert created.json()["created"] is True
    assert item["id"] == f"answer-{answer['answer_id']}" and item["question"] == PARKING
    assert item["answer"] == "Parking permits cost 45 dollars a month [1]."
    assert item["sources"] == list(dict.fromkeys(c["source"] for c in answer["citations"]))
    assert item["answerable"] is True and item["split"] in ("train", "heldout")
    assert item["from_answer"] == answer["answer_id"] and item["added_by"] == "olga"
    assert [i.to_json() for i in golden_set(golden_path)] == [item]

    # a retry returns the stored item; the same question from another answer is a duplicate
    again = client.post("/api/golden", json=body, headers=AS_OPERATOR)
    assert again.status_code == 200 and again.json() == {"item": item, "created": False}
    other = answered(client, PARKING.upper(), "Forty dollars.")
    assert_error(
        client.post("/api/golden", json={"answer_id": other["answer_id"]}, headers=AS_OPERATOR),
        409,
        "duplicate_golden",
        "already in the golden set",
    )
    reworded = client.post(
        "/api/golden",
        json={
            "answer_id": other["answer_id"],
            "question": "What does parking cost?",
            "category": "facilities",
        },
        headers=AS_OPERATOR,
    )
    assert reworded.status_code == 200 and reworded.json()["item"]["answer"] == "Forty dollars."

    listed = client.get("/api/golden", headers=AS_OPERATOR)
    assert listed.status_code == 200
    assert [i["question"] for i in listed.json()["items"]] == [PARKING, "What does parking cost?"]
    assert listed.json()["path"] == str(golden_path)
    sides = [
        client.get(f"/api/golden?split={s}", headers=AS_OPERATOR).json()["total"]
        for s in ("train", "heldout")
    ]
    assert sum(sides) == 2
    assert_error(client.get("/api/golden", headers=AS_EMPLOYEE), 403, "forbidden")
    assert client.get("/api/golden?split=test", headers=AS_OPERATOR).status_code == 422


def test_unknown_answers_and_bad_input_are_named(
    make_client: Callable[..., TestClient], tokens_file: Path, tmp_path: Path
) -> None:
    client = make_client(tokens_file=tokens_file, refusal_threshold=0.0)
    uncorrected = answered(client, PARKING, None)
    assert_error(
        client.post("/api/golden", json={"answer_id": "no-such-answer"}, headers=AS_OPERATOR),
        404,
        "answer_not_found",
    )
    assert_error(
        client.post("/api/golden", json={"answer_id": uncorrected["answer_id"]}, headers=AS_OPERATOR),
        422,
        "invalid_golden",
        "no correction yet",
        "'answer'",
    )
    for bad in ({"answer_id": ""}, {"answer_id": "x", "answer": ""}, {"answer_id": "x", "colour": "red"}, {}):
        assert client.post("/api/golden", json=bad, headers=AS_OPERATOR).status_code == 422, bad
    blank = {"answer_id": uncorrected["answer_id"], "answer": "   "}
    assert_error(
        client.post("/api/golden", json=blank, headers=AS_OPERATOR), 422, "invalid_golden", "'answer'"
    )
    assert not (tmp_path / "var" / "golden.jsonl").exists()  # nothing was written by any of them
    given = {"answer_id": uncorrected["answer_id"], "answer": "Forty dollars a month."}
    assert client.post("/api/golden", json=given, headers=AS_OPERATOR).status_code == 200
