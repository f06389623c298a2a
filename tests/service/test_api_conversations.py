"""Conversation history over HTTP: each caller's own, newest first; continuing keeps the id; another
user's conversation is 404 (operators may open any)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.service.conftest import EMPLOYEE, ENGINEER, OPERATOR, PARKING, UNCOVERED

ERIN = {"Authorization": f"Bearer {EMPLOYEE}"}
ED = {"Authorization": f"Bearer {ENGINEER}"}
OLGA = {"Authorization": f"Bearer {OPERATOR}"}


def chat(client: TestClient, headers: dict[str, str], messages: list[dict[str, str]], **extra: Any) -> Any:
    body = {"messages": messages, "max_tokens": 3, "temperature": 0, **extra}
    response = client.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def team(make_client: Callable[..., TestClient], tokens_file: Path) -> TestClient:
    return make_client(tokens_file=tokens_file)


def test_listing_is_the_callers_own_newest_first_and_continuing_keeps_the_id(team: TestClient) -> None:
    first = chat(team, ERIN, [{"role": "user", "content": PARKING}])
    conversation = first["kbloop"]["conversation_id"]
    other = chat(team, ERIN, [{"role": "user", "content": UNCOVERED}])  # a second conversation, refused
    chat(team, ED, [{"role": "user", "content": "Where is the VPN guide?"}])
    listed = team.get("/api/conversations", headers=ERIN).json()
    assert listed["total"] == 2
    assert [c["conversation_id"] for c in listed["conversations"]] == [
        other["kbloop"]["conversation_id"],
        conversation,
    ]

    # continue the older one: the history and its id go back with the next question
    history = [
        {"role": "user", "content": PARKING},
        {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
        {"role": "user", "content": "And for electric cars?"},
    ]
    follow_up = chat(team, ERIN, history, conversation_id=conversation)
    assert follow_up["kbloop"]["conversation_id"] == conversation
    listed = team.get("/api/conversations", headers=ERIN).json()["conversations"]
    top = listed[0]  # active again: on top
    assert (top["conversation_id"], top["turns"], top["title"]) == (conversation, 2, PARKING)

    opened = team.get(f"/api/conversations/{conversation}", headers=ERIN)
    assert opened.status_code == 200, opened.text
    turns = opened.json()["turns"]
    assert [t["question"] for t in turns] == [PARKING, "And for electric cars?"]
    assert [t["answer_id"] for t in turns] == [first["kbloop"]["answer_id"], follow_up["kbloop"]["answer_id"]]
    assert turns[0]["answer"] == first["choices"][0]["message"]["content"]
    assert turns[0]["kind"] == first["kbloop"]["kind"] and turns[0]["citations"] == [
        {k: c[k] for k in ("n", "chunk_id", "source", "section", "title")}
        for c in first["kbloop"]["citations"]
    ]
    refused = team.get(f"/api/conversations/{other['kbloop']['conversation_id']}", headers=ERIN).json()
    assert [(t["refused"], t["kind"]) for t in refused["turns"]] == [(True, "refusal")]

    paged = team.get("/api/conversations?limit=1&offset=1", headers=ERIN).json()
    assert paged["total"] == 2 and [c["conversation_id"] for c in paged["conversations"]] == [
        other["kbloop"]["conversation_id"]
    ]


def test_nobody_lists_or_opens_another_users_conversation(team: TestClient) -> None:
    erins = chat(team, ERIN, [{"role": "user", "content": PARKING}])["kbloop"]["conversation_id"]
    assert team.get("/api/conversations", headers=ED).json() == {"total": 0, "conversations": []}
    hidden = team.get(f"/api/conversations/{erins}", headers=ED)
    unknown = team.get("/api/conversations/no-such-conversation", headers=ED)
    assert hidden.status_code == unknown.status_code == 404  # the same answer: the id's use is not revealed
    assert hidden.json()["error"]["code"] == "not_found"
    assert hidden.json()["error"]["message"].replace(erins, "X") == unknown.json()["error"][
        "message"
    ].replace("no-such-conversation", "X")
    # writing under erin's id does not open it either: ed sees his own turn only
    chat(team, ED, [{"role": "user", "content": "Planted?"}], conversation_id=erins)
    planted = team.get(f"/api/conversations/{erins}", headers=ED).json()["turns"]
    assert [t["question"] for t in planted] == ["Planted?"]
    assert [t["question"] for t in team.get(f"/api/conversations/{erins}", headers=ERIN).json()["turns"]] == [
        PARKING
    ]
    # an operator may open anyone's, every turn with its asker; the operator's own listing stays empty
    seen = team.get(f"/api/conversations/{erins}", headers=OLGA).json()["turns"]
    assert [(t["user_id"], t["question"]) for t in seen] == [("erin", PARKING), ("ed", "Planted?")]
    assert team.get("/api/conversations", headers=OLGA).json()["total"] == 0
    assert team.get("/api/conversations").status_code == 401  # no token


@pytest.mark.parametrize(
    "query",
    ["limit=0", "limit=201", "offset=-1", "limit=abc", "limit=2&limit=3"],
)
def test_bad_paging_is_422(team: TestClient, query: str) -> None:
    response = team.get(f"/api/conversations?{query}", headers=ERIN)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_request"


def test_a_malformed_conversation_id_is_422(team: TestClient) -> None:
    response = team.get("/api/conversations/bad%20id", headers=ERIN)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"
    assert team.get(f"/api/conversations/{'x' * 129}", headers=ERIN).status_code == 422
