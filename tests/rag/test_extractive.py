"""The extractive answer: the passage sentences that cover the question, with their [n]."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rag.extractive import (
    asks_quantity,
    candidate_sentences,
    extractive_answer,
    rank_sentences,
    states_quantity,
)

PASSAGES = [
    "# Leave\nThe holiday calendar has 11 paid holidays. New employees get 15 vacation days in their first "
    "year. Unused days carry over up to 5 days.",
    "Report a stolen laptop to the IT help desk at extension 4357 within 1 hour. Change your passwords.",
]


def test_candidates_skip_headings_and_fragments() -> None:
    texts = [s.text for s in candidate_sentences(PASSAGES)]
    assert "Leave" not in texts and "Change your passwords." not in texts  # 1 and 3 words
    assert texts[0] == "The holiday calendar has 11 paid holidays."


def test_the_covering_sentence_ranks_first_and_keeps_its_passage_number() -> None:
    ranked = rank_sentences("How many vacation days do new employees get?", PASSAGES)
    assert ranked[0].text.startswith("New employees get 15 vacation days") and ranked[0].n == 1
    answer = extractive_answer("who do I call when my laptop is stolen", PASSAGES, max_sentences=1)
    assert answer == "Report a stolen laptop to the IT help desk at extension 4357 within 1 hour. [2]"


def test_an_embedder_breaks_a_lexical_tie() -> None:
    # two sentences share no word with the question; the embedding decides
    passages = ["Badges open every door after 7 pm. Parking costs 90 dollars monthly."]

    def embed(texts: list[str]) -> np.ndarray:
        vectors = np.array([[1.0, 0.0] if ("park" in t.lower() or "car" in t) else [0.0, 1.0] for t in texts])
        return vectors

    ranked = rank_sentences("where can my car go", passages, embed)
    assert ranked[0].text.startswith("Parking")


def test_only_sentences_close_to_the_best_are_kept_in_document_order() -> None:
    # ranked: the vacation sentence, then "Unused days..." (it carries half of "vacation"), then holidays
    answer = extractive_answer("vacation days holidays", PASSAGES, max_sentences=2, min_relative=0.5)
    assert answer.index("15 vacation days") < answer.index("Unused days") and "holidays" not in answer
    assert "4357" not in answer
    assert extractive_answer("anything", ["Too short."]) == ""


def test_sentences_that_would_read_as_a_loop_are_left_out() -> None:
    passages = [
        "Cold rules apply when the wind chill is below 32 F. Breaks start when the wind chill is below 10 F. "
        "Work stops when the wind chill is below -20 F."
    ]
    answer = extractive_answer("what happens when the wind chill is below zero", passages)
    assert answer.count("when the wind chill is below") == 2


def test_a_sentence_inherits_half_its_predecessors_coverage_and_a_time_bonus() -> None:
    # hand-computed: the question's content words are forklift, practical, exam, booked; A holds the
    # first three (idf ln 2 each, df 1 of 2 sentences), B none, "booked" neither (idf ln 3)
    passages = ["The forklift course has a practical exam. Bookings open every Tuesday morning."]
    question = "When is the forklift practical exam booked?"
    a = 3 * math.log(2) / (3 * math.log(2) + math.log(3))
    plain = {s.text[:8]: s.score for s in rank_sentences(question, passages, carry=0.0, type_bonus=0.0)}
    assert plain == {"The fork": pytest.approx(a), "Bookings": 0.0}
    scored = {s.text[:8]: s.score for s in rank_sentences(question, passages)}  # carry 0.5, bonus 0.2
    assert scored == {"The fork": pytest.approx(a), "Bookings": pytest.approx(0.5 * a + 0.2)}
    # no carry across passages, and no bonus when the question asks for no quantity or time
    apart = {s.text[:8]: s.score for s in rank_sentences(question, passages[0].split(". "))}
    assert apart["Bookings"] == pytest.approx(0.2 - 0.05)  # passage 2: its rank weight only
    what = rank_sentences("What is the forklift practical exam?", passages)
    assert [s.text[:8] for s in what] == ["The fork", "Bookings"] and what[1].score == pytest.approx(
        0.5 * 1.0
    )


def test_quantity_questions_and_statements() -> None:
    assert asks_quantity("How long do we have to finish action items?")
    assert asks_quantity("by when do I register a visitor") and asks_quantity("What days do we get paid?")
    assert not asks_quantity("Who approves an exception?") and not asks_quantity("how do I reset my VPN")
    assert states_quantity("within 30 days") and states_quantity("every Tuesday") and states_quantity("twice")
    assert not states_quantity("Ask the records manager for approval.")
    assert not states_quantity("1. The policy explains leave [1].\n2. Ask HR [2].")  # list numbers, markers
