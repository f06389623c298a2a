"""The Compare tab's handlers against the real app state: a blind pair, a final choice, the reveal."""

from __future__ import annotations

import asyncio

import gradio as gr
import pytest
from fastapi.testclient import TestClient

from feedback.comparisons import Choice
from feedback.errors import AlreadyChosen
from service.api.deps import AppState
from service.errors import InvalidRequest
from tests.service.conftest import PARKING, UNCOVERED
from ui.compare import ask, choose
from ui.render import code


def test_pair_is_blind_until_the_choice_then_revealed(client: TestClient) -> None:
    state: AppState = client.app.state.kbloop  # type: ignore[attr-defined]
    store = state.store
    assert store is not None
    shown, left, right = asyncio.run(ask(state, None, PARKING))
    for pane in (left, right):
        assert "policies/parking.md" in pane
        assert shown.left.model_version not in pane  # nothing on screen says who wrote it
    comparison = store.get_comparison(shown.comparison_id)
    assert (comparison.left_answer_id, comparison.right_answer_id) == (
        shown.left.answer_id,
        shown.right.answer_id,
    )
    reveal = choose(state, None, shown, Choice.A)
    assert "Answer A is better" in reveal
    assert f"Answer A was written by model {code(shown.left.model_version)}" in reveal
    assert "temperature 0.3" in reveal and "temperature 0.9" in reveal  # champion sampled twice
    assert store.get_comparison(shown.comparison_id).choice is Choice.A
    with pytest.raises(AlreadyChosen):
        choose(state, None, shown, Choice.B)


def test_nothing_to_compare(client: TestClient) -> None:
    state: AppState = client.app.state.kbloop  # type: ignore[attr-defined]
    with pytest.raises(InvalidRequest):
        asyncio.run(ask(state, None, UNCOVERED))
    with pytest.raises(gr.Error):
        asyncio.run(ask(state, None, " "))
    with pytest.raises(gr.Error):
        choose(state, None, None, Choice.TIE)
