"""The Chat tab's handlers against the real app state (tiny model, fixture index), without a browser."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from service.api.deps import AppState
from service.errors import Forbidden, NotReady, Unauthorized
from tests.service.conftest import EMPLOYEE, ENGINEER, OPERATOR, PARKING, UNCOVERED
from ui import access
from ui.chat import ChatSession, rate, respond, send_feedback

INJECTION = 'What about <img src=x onerror="alert(1)"> **parking**?'


def state_of(client: TestClient) -> AppState:
    state: AppState = client.app.state.kbloop  # type: ignore[attr-defined]
    return state


Snapshot = list[tuple[str, str, str, str | None]]


def ask(state: AppState, question: str, session: ChatSession, token: str | None = None) -> list[Snapshot]:
    """Every state of the session `respond` yields, as (role, text, shown, answer id) per turn."""

    async def run() -> list[Snapshot]:
        return [snapshot_of(s) async for s in respond(state, token, question, session)]

    return asyncio.run(run())


def snapshot_of(session: ChatSession) -> Snapshot:
    return [(t.role, t.text, t.shown, t.answer_id) for t in session.turns]


@pytest.fixture
def state(client: TestClient) -> AppState:
    return state_of(client)


def test_answer_streams_then_shows_sources_and_is_stored(state: AppState) -> None:
    session = ChatSession()
    snapshots = ask(state, PARKING, session)
    assert snapshots[0][-1][2] == "*…*"  # the placeholder appears before the answer
    assert len(snapshots) >= 3  # placeholder, at least one streamed piece, the final answer
    role, text, shown, answer_id = snapshots[-1][-1]
    assert role == "assistant" and answer_id is not None
    assert "kb-sources" in shown and "policies/parking.md" in shown
    record = state.store.get_answer(answer_id)  # type: ignore[union-attr]
    assert record.answer == text and record.messages == [{"role": "user", "content": PARKING}]
    assert session.conversation_id == record.conversation_id


def test_follow_up_sends_the_visible_conversation(state: AppState) -> None:
    session = ChatSession()
    ask(state, PARKING, session)
    first = session.turns[1]
    ask(state, INJECTION, session)
    assert [t.role for t in session.turns] == ["user", "assistant", "user", "assistant"]
    record = state.store.get_answer(session.turns[3].answer_id)  # type: ignore[arg-type,union-attr]
    assert record.messages == [
        {"role": "user", "content": PARKING},
        {"role": "assistant", "content": first.text},
        {"role": "user", "content": INJECTION},
    ]
    assert record.conversation_id == session.conversation_id
    shown = session.turns[2].shown
    assert "<img" not in shown and "&lt;img" in shown and "\\*\\*parking\\*\\*" in shown


def test_refusal_has_no_source_list(state: AppState) -> None:
    session = ChatSession()
    ask(state, UNCOVERED, session)
    answer = session.turns[-1]
    assert answer.answer_id is not None and "kb-sources" not in answer.shown
    assert state.store.get_answer(answer.answer_id).refused  # type: ignore[union-attr]


def test_thumbs_then_reasons_comment_and_correction(state: AppState) -> None:
    session = ChatSession()
    ask(state, PARKING, session)
    answer_id = session.turns[1].answer_id
    assert answer_id is not None
    store = state.store
    assert store is not None

    rated = rate(state, None, session, 1, False)
    assert rated is not None and rated.value == "down" and rated.answer_id == answer_id
    vote = store.get_vote(answer_id, "local")
    assert vote is not None and vote.value.value == "down" and vote.reasons == ()

    done = send_feedback(state, None, rated, ["outdated", "incomplete"], " too vague ", "It costs $45.")
    assert "thumbs down (outdated, incomplete)" in done and "suggested answer" in done
    vote = store.get_vote(answer_id, "local")
    assert vote is not None
    assert [r.value for r in vote.reasons] == ["outdated", "incomplete"] and vote.comment == "too vague"
    assert [c.text for c in store.list_corrections(answer_id=answer_id)] == ["It costs $45."]

    up = rate(state, None, session, 1, True)
    assert up is not None and up.value == "up"
    send_feedback(state, None, up, ["outdated"], "", "")  # reasons belong to thumbs down only
    vote = store.get_vote(answer_id, "local")
    assert vote is not None and vote.value.value == "up" and vote.reasons == ()

    assert rate(state, None, session, [1], "") is None  # the thumb clicked again: withdrawn
    vote = store.get_vote(answer_id, "local")
    assert vote is not None and vote.value.value == "none"


def test_only_answers_can_be_rated(state: AppState) -> None:
    session = ChatSession()
    ask(state, PARKING, session)
    with pytest.raises(gr.Error):
        rate(state, None, session, 0, True)  # the question
    with pytest.raises(gr.Error):
        rate(state, None, session, 7, True)
    with pytest.raises(gr.Error):
        send_feedback(state, None, None, [], "", "")


def test_empty_question_and_failure_leave_the_conversation_as_it_was(state: AppState) -> None:
    session = ChatSession()
    with pytest.raises(gr.Error):
        ask(state, "   ", session)
    answerer, state.answerer = state.answerer, None
    try:
        with pytest.raises(NotReady):
            ask(state, PARKING, session)
    finally:
        state.answerer = answerer
    assert session.turns == []


def test_one_answer_at_a_time_and_a_page_gone_mid_answer(state: AppState) -> None:
    session = ChatSession()

    async def run() -> None:
        stream = respond(state, None, PARKING, session)
        await anext(stream)  # the question and the placeholder are shown
        assert session.busy()
        with pytest.raises(gr.Error, match="Wait"):
            await anext(respond(state, None, PARKING, session))
        await stream.aclose()  # what Gradio does when the page goes away or the event is cancelled

    asyncio.run(run())
    assert session.turns == [] and not session.busy()


def test_tokens_are_required_when_configured(
    make_client: Callable[..., TestClient], tokens_file: Path
) -> None:
    state = state_of(make_client(tokens_file=tokens_file))
    with pytest.raises(Unauthorized):
        access.identify(state, "")
    with pytest.raises(Unauthorized):
        access.identify(state, "not-a-token-at-all-really")
    assert access.identify(state, f" {EMPLOYEE} ").user == "erin"
    with pytest.raises(Forbidden):
        access.operator(state, EMPLOYEE)
    assert access.operator(state, OPERATOR).user == "olga"
    session = ChatSession()
    with pytest.raises(Unauthorized):
        ask(state, PARKING, session, token=None)
    ask(state, PARKING, session, token=EMPLOYEE)
    rated = rate(state, EMPLOYEE, session, 1, False)
    assert rated is not None
    vote = state.store.get_vote(rated.answer_id, "erin")  # type: ignore[union-attr]
    assert vote is not None and vote.value.value == "down"
    with pytest.raises(gr.Error, match="someone else"):  # another employee's token now
        rate(state, ENGINEER, session, 1, True)
    with pytest.raises(gr.Error, match="someone else"):
        send_feedback(state, ENGINEER, rated, [], "mine now", "")
    assert rate(state, OPERATOR, session, 1, True) is not None  # operators may
