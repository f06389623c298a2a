"""The Chat tab's handlers against the real app state (tiny model, fixture index), without a browser."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from feedback.records import Citation
from service.answering import Answer, ChatInput, Delta
from service.api.deps import AppState
from service.errors import Forbidden, NotReady, Unauthorized
from tests.feedback.factory import make_record
from tests.service.conftest import EMPLOYEE, ENGINEER, OPERATOR, PARKING, UNCOVERED
from ui import access
from ui.chat import ChatSession, history, history_label, rate, reopen, respond, send_feedback
from ui.render import html_text

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


# -- history: reopen a stored conversation and continue it ----------------------------------------------


def test_history_lists_newest_first_and_reopening_restores_and_continues(state: AppState) -> None:
    first = ChatSession()
    ask(state, PARKING, first)
    ask(state, "And for electric cars?", first)
    second = ChatSession()
    ask(state, UNCOVERED, second)  # newer, refused
    listed = history(state, None)
    assert [cid for _, cid in listed] == [second.conversation_id, first.conversation_id]
    assert listed[1][0].startswith(PARKING) and "2 turns" in listed[1][0] and "1 turn ·" in listed[0][0]

    reopened = reopen(state, None, first.conversation_id)  # type: ignore[arg-type]
    assert reopened.conversation_id == first.conversation_id
    assert [(t.role, t.text, t.answer_id) for t in reopened.turns] == [
        (t.role, t.text, t.answer_id) for t in first.turns
    ]
    # the tiny model cites nothing; what the answers cite is restored (next test), the rest as text
    assert [t.shown for t in reopened.turns[::2]] == [t.shown for t in first.turns[::2]]

    # the next question goes out in the reopened conversation, with its history
    ask(state, "Is there a waiting list?", reopened)
    record = state.store.get_answer(reopened.turns[-1].answer_id)  # type: ignore[arg-type,union-attr]
    assert record.conversation_id == first.conversation_id
    assert record.messages == [*first.messages(), {"role": "user", "content": "Is there a waiting list?"}]
    assert next(cid for _, cid in history(state, None)) == first.conversation_id  # active again: on top
    assert rate(state, None, reopened, 1, True) is not None  # a reopened answer can still be rated


def test_a_reopened_answer_shows_its_cited_passages_from_the_index(state: AppState) -> None:
    version = state.retriever.current()  # type: ignore[union-attr]
    chunk = next(c for c in version.chunks if c.source == "policies/parking.md")
    cited = Citation(1, chunk.chunk_id, chunk.source, chunk.section, chunk.title)
    gone = Citation(2, "policies/removed.md#0", "policies/removed.md", "", "Removed")
    record = make_record(
        "cited-1",
        conversation_id="c-cited",
        user_id="local",
        messages=[{"role": "user", "content": PARKING}],
        answer="Permits cost 45 dollars [1], see also [2].",
        citations=[cited, gone],
        kind="extractive",
    )
    state.store.record_answer(record)  # type: ignore[union-attr]
    shown = reopen(state, None, "c-cited").turns[1].shown
    assert "policies/parking.md" in shown and html_text(chunk.text) in shown  # its text, from the index
    assert "policies/removed.md" in shown  # re-indexed away: listed by its name, without text
    assert shown.index("did not pass its checks") < shown.index("kb-sources")


def test_a_reopened_refusal_has_no_sources(state: AppState) -> None:
    session = ChatSession()
    ask(state, UNCOVERED, session)
    reopened = reopen(state, None, session.conversation_id)  # type: ignore[arg-type]
    assert reopened.turns[1].shown == session.turns[1].shown and "kb-sources" not in reopened.turns[1].shown


def test_nobody_lists_or_reopens_another_users_conversation(
    make_client: Callable[..., TestClient], tokens_file: Path
) -> None:
    state = state_of(make_client(tokens_file=tokens_file))
    erins = ChatSession()
    ask(state, PARKING, erins, token=EMPLOYEE)
    assert [cid for _, cid in history(state, EMPLOYEE)] == [erins.conversation_id]
    assert history(state, ENGINEER) == []
    with pytest.raises(gr.Error, match="not in your history"):
        reopen(state, ENGINEER, erins.conversation_id)  # type: ignore[arg-type]
    with pytest.raises(gr.Error, match="not in your history"):  # the UI lists and opens one's own only
        reopen(state, OPERATOR, erins.conversation_id)  # type: ignore[arg-type]
    with pytest.raises(Unauthorized):
        history(state, "")


def test_history_labels_are_one_plain_line() -> None:
    assert history_label("How  much\nis parking?", 1, "2026-12-02T10:05:00.123Z") == (
        "How much is parking? · 1 turn · 2026-12-02 10:05"
    )
    assert history_label("", 3, "2026-12-02T10:05:00.123Z").startswith("(no question) · 3 turns")


class Replaced:
    """An answerer that streams a degenerate text, then ends with the checked answer that replaced it
    (what service.answering's final check does): the Chat tab must show the final text, not the stream."""

    def __init__(self, final: Answer) -> None:
        self.final = final

    async def answer(self, request: ChatInput, identity: Any) -> AsyncIterator[Delta | Answer]:
        for _ in range(3):
            yield Delta("The passage 1 is about the passage 1. ")
        yield self.final


def test_the_final_answer_replaces_the_streamed_text_and_an_extractive_one_says_so(state: AppState) -> None:
    from tests.ui.test_render import extractive_answer

    final = extractive_answer()
    real, state.answerer = state.answerer, Replaced(final)  # type: ignore[assignment]
    try:
        snapshots = ask(state, PARKING, ChatSession())
    finally:
        state.answerer = real
    streamed = snapshots[-2][-1]
    assert "The passage 1 is about" in streamed[2] and streamed[3] is None
    _role, text, shown, answer_id = snapshots[-1][-1]
    assert (text, answer_id) == (final.text, "a1")
    assert "The passage 1 is about" not in shown and "45 dollars per month" in shown
    assert shown.index("did not pass its checks") < shown.index("kb-sources")
