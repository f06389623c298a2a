from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient

from feedback.store import Store
from rag.prompting import PROMPT_TEMPLATE_HASH, REFUSAL_TEXT
from tests.service.conftest import PARKING, UNCOVERED, ask


def stored(client: TestClient, answer_id: str) -> Any:
    store: Store = client.app.state.kbloop.store  # type: ignore[attr-defined]
    return store.get_answer(answer_id)


def test_chat_completion_shape_and_provenance(client: TestClient) -> None:
    response = client.post("/v1/chat/completions", json=ask(PARKING, temperature=0, max_tokens=8, seed=3))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "chat.completion" and body["id"].startswith("chatcmpl-")
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    kb = body["kbloop"]
    assert kb["refused"] is False and kb["model_version"] == "v0001" == body["model"]
    assert kb["passages"][0]["source"] == "policies/parking.md"
    assert body["usage"]["completion_tokens"] <= 8
    assert (
        body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    )
    record = stored(client, kb["answer_id"])
    assert record.answer == choice["message"]["content"]
    assert record.user_id == "local" and record.model_version == "v0001"
    assert record.index_version == kb["index_version"] and record.index_version
    assert record.prompt_template_hash == PROMPT_TEMPLATE_HASH
    assert record.retrieved[0].source == "policies/parking.md" and record.retrieved[0].chunk_id
    assert {k: record.generation[k] for k in ("temperature", "top_p", "max_tokens", "seed")} == {
        "temperature": 0.0, "top_p": 1.0, "max_tokens": 8, "seed": 3
    }  # fmt: skip
    assert record.generation["repetition_penalty"] >= 1.0
    assert record.prompt_tokens == body["usage"]["prompt_tokens"] > 0
    assert "Permits cost 45 dollars" in record.prompt or "45 dollars" in record.prompt
    assert set(record.latency_ms) >= {"retrieval", "prompt", "generation", "ttft", "total"}
    assert record.conversation_id == kb["conversation_id"]


def sse_events(text: str) -> list[Any]:
    lines = [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    return [json.loads(line) for line in lines[:-1]]


def test_streaming_follows_the_openai_format(client: TestClient) -> None:
    with client.stream("POST", "/v1/chat/completions", json=ask(PARKING, stream=True, max_tokens=10)) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        text = "".join(r.iter_text())
    events = sse_events(text)
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(e["object"] == "chat.completion.chunk" for e in events)
    assert len({e["id"] for e in events}) == 1
    final = events[-1]
    assert final["choices"][0]["finish_reason"] in ("stop", "length") and "kbloop" in final
    content = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert stored(client, final["kbloop"]["answer_id"]).answer == content


def test_uncovered_question_is_refused_without_generating(client: TestClient) -> None:
    body = client.post("/v1/chat/completions", json=ask(UNCOVERED)).json()
    kb = body["kbloop"]
    assert kb["refused"] is True and body["usage"]["completion_tokens"] == 0
    assert body["choices"][0]["message"]["content"].startswith(REFUSAL_TEXT)
    assert "closest documents" in body["choices"][0]["message"]["content"]
    record = stored(client, kb["answer_id"])
    assert record.refused and record.finish_reason == "refused"
    metrics = client.get("/metrics").text
    assert "kbloop_refusals_total 1.0" in metrics


def test_follow_up_keeps_the_conversation(client: TestClient) -> None:
    messages = [
        {"role": "user", "content": PARKING},
        {"role": "assistant", "content": "Permits cost 45 dollars a month [1]."},
        {"role": "user", "content": "where do I get it?"},
    ]
    body = client.post(
        "/v1/chat/completions", json={"messages": messages, "max_tokens": 4, "conversation_id": "conv-1"}
    ).json()
    assert body["kbloop"]["conversation_id"] == "conv-1"
    assert body["kbloop"]["passages"][0]["source"] == "policies/parking.md"
    record = stored(client, body["kbloop"]["answer_id"])
    assert record.question == f"{PARKING} where do I get it?"
    assert record.messages == messages


def test_a_conversation_longer_than_the_context_is_truncated(client: TestClient) -> None:
    long_turn = "parking permits and badges " * 150  # ~600 tokens each; the tiny model holds 512
    messages = []
    for _ in range(4):
        messages += [{"role": "user", "content": long_turn}, {"role": "assistant", "content": long_turn}]
    messages.append({"role": "user", "content": PARKING})
    response = client.post("/v1/chat/completions", json={"messages": messages, "max_tokens": 8})
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["prompt_tokens"] + 8 <= 512


def test_access_groups_limit_retrieval(make_client: Any, tokens_file: Any) -> None:
    from tests.service.conftest import EMPLOYEE, ENGINEER

    client = make_client(tokens_file=tokens_file)
    question = ask("The VPN tunnel keeps dropping, what should I do?", max_tokens=4)
    public = client.post(
        "/v1/chat/completions", json=question, headers={"Authorization": f"Bearer {EMPLOYEE}"}
    )
    member = client.post(
        "/v1/chat/completions", json=question, headers={"Authorization": f"Bearer {ENGINEER}"}
    )
    assert public.status_code == member.status_code == 200
    assert all(p["source"] != "policies/vpn.md" for p in public.json()["kbloop"]["passages"])
    assert member.json()["kbloop"]["passages"][0]["source"] == "policies/vpn.md"
    assert stored(client, member.json()["kbloop"]["answer_id"]).user_id == "ed"
