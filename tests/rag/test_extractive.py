"""The extractive answer: the passage sentences that cover the question, with their [n]."""

from __future__ import annotations

import numpy as np

from rag.extractive import candidate_sentences, extractive_answer, rank_sentences

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
    answer = extractive_answer("vacation days holidays", PASSAGES, max_sentences=3, min_relative=0.5)
    assert answer.index("11 paid holidays") < answer.index("15 vacation days")
    assert "4357" not in answer
    assert extractive_answer("anything", ["Too short."]) == ""


def test_sentences_that_would_read_as_a_loop_are_left_out() -> None:
    passages = [
        "Cold rules apply when the wind chill is below 32 F. Breaks start when the wind chill is below 10 F. "
        "Work stops when the wind chill is below -20 F."
    ]
    answer = extractive_answer("what happens when the wind chill is below zero", passages)
    assert answer.count("when the wind chill is below") == 2
