"""The Operator tab: rates and tables from the store, and thumbs-down answers next to their passages."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from feedback.stats import pairwise_win_rates, reason_histograms, thumbs_rates
from service.api.deps import AppState
from service.errors import Forbidden, Unauthorized
from tests.service.conftest import EMPLOYEE, OPERATOR, PARKING
from ui.chat import ChatSession, rate, respond, send_feedback
from ui.operator import inspect, overview, reason_rows, thumbs_by_day, thumbs_rows, win_rows


def test_tables_from_statistics() -> None:
    thumbs = thumbs_rates(
        [("v1", "2026-01-01", 3, 1), ("v1", "2026-01-02", 0, 0), ("v2", "2026-01-01", 0, 2)]
    )
    assert thumbs_rows(thumbs)[0][:4] == ["v1", 3, 1, "75%"]
    assert thumbs_rows(thumbs)[1][3] == "0%" and thumbs_rows(thumbs)[1][4].startswith("0%–")
    by_day = thumbs_by_day(thumbs)
    assert list(by_day.columns) == ["day", "model version", "thumbs-up rate", "votes"]
    assert len(by_day) == 2  # the day without votes has no rate to plot
    wins = win_rows(pairwise_win_rates([("v1", "v2", "A"), ("v2", "v1", "A"), ("v1", "v2", "tie")]))
    assert wins == [["v1", "v2", 1, 1, 1, 0, "50%", wins[0][7]]]
    reasons = reason_rows(reason_histograms([("v1", ("outdated",)), ("v1", ())]))
    assert reasons[0][:4] == ["v1", 2, 1, 0] and reasons[0][4] == 1  # incorrect 0, outdated 1


def ask(state: AppState, token: str, question: str) -> ChatSession:
    session = ChatSession()

    async def run() -> None:
        async for _ in respond(state, token, question, session):
            pass

    asyncio.run(run())
    return session


def test_thumbs_down_answers_with_passages_and_hint(
    make_client: Callable[..., TestClient], tokens_file: Path
) -> None:
    state: AppState = make_client(tokens_file=tokens_file).app.state.kbloop  # type: ignore[attr-defined]
    with pytest.raises(Unauthorized):
        overview(state, None)
    with pytest.raises(Forbidden):
        overview(state, EMPLOYEE)

    answered = ask(state, EMPLOYEE, PARKING)
    rated = rate(state, EMPLOYEE, answered, 1, False)
    send_feedback(state, EMPLOYEE, rated, ["incorrect"], "<b>wrong</b>", "Permits cost 45 dollars per month.")
    other = ask(state, EMPLOYEE, PARKING + " For bikes?")
    send_feedback(
        state, EMPLOYEE, rate(state, EMPLOYEE, other, 1, False), [], "", "Bikes go in the basement rack."
    )
    rate(state, EMPLOYEE, ask(state, EMPLOYEE, PARKING), 1, True)

    seen = overview(state, OPERATOR)
    assert [row[1:3] for row in seen.thumbs] == [[1, 2]]
    assert [d.answer_id for d in seen.down] == [other.turns[1].answer_id, answered.turns[1].answer_id]
    assert seen.down[1].reasons == ("incorrect",) and seen.down[1].comment == "<b>wrong</b>"
    assert "no decisive" in seen.bias

    answer, passages, hint = inspect(state, OPERATOR, answered.turns[1].answer_id)
    assert "&lt;b&gt;wrong&lt;/b&gt;" in answer and "<b>wrong" not in answer
    assert "Permits cost 45 dollars per month" in answer.replace("\\", "")
    assert "policies/parking.md" in passages and "Parking permits cost 45 dollars" in passages
    assert "generation" in hint
    assert "retrieval" in inspect(state, OPERATOR, other.turns[1].answer_id)[2]
    assert inspect(state, OPERATOR, None) == ("", "", "")


def test_an_inspected_answer_and_its_correction_become_a_golden_item(
    make_client: Callable[..., TestClient], tokens_file: Path, tmp_path: Path
) -> None:
    from feedback.errors import DuplicateGolden, InvalidGolden
    from feedback.golden import golden_set
    from ui.operator import add_golden

    state: AppState = make_client(tokens_file=tokens_file).app.state.kbloop  # type: ignore[attr-defined]
    answered = ask(state, EMPLOYEE, PARKING)
    rated = rate(state, EMPLOYEE, answered, 1, False)
    answer_id = answered.turns[1].answer_id
    with pytest.raises(Forbidden):
        add_golden(state, EMPLOYEE, answer_id, "")
    with pytest.raises(InvalidGolden, match="no correction yet"):
        add_golden(state, OPERATOR, answer_id, "")
    send_feedback(state, EMPLOYEE, rated, ["incorrect"], "", "Permits cost 45 dollars per month.")
    assert add_golden(state, OPERATOR, None, "") == "Pick an answer to inspect first."

    note = add_golden(state, OPERATOR, answer_id, "")
    assert note.startswith("Added <code>answer") and answer_id in note and "to the golden set" in note
    path = tmp_path / "var" / "golden.jsonl"
    [item] = golden_set(path)
    assert (item.question, item.answer) == (PARKING, "Permits cost 45 dollars per month.")
    again = add_golden(state, OPERATOR, answer_id, "")
    assert again.startswith("Already in the golden set as") and answer_id in again
    other = ask(state, EMPLOYEE, PARKING)  # the same question again: not a second golden item
    with pytest.raises(DuplicateGolden):
        add_golden(state, OPERATOR, other.turns[1].answer_id, "Forty-five dollars.")
    assert len(golden_set(path)) == 1
