"""bench/answers.py's scoring rules on hand-made answers."""

from __future__ import annotations

import pytest

from bench.answers import (
    content_words,
    degenerate,
    echoes,
    extractive,
    holds,
    invalid_citations,
    percentile,
    rate,
    says_refusal,
)


def test_content_words_drop_stopwords_keep_numbers() -> None:
    assert content_words("within 4 hours of the alarm") == ["within", "4", "hours", "alarm"]
    assert content_words("0.5 mg/L") == ["0", "5", "mg", "l"]
    assert content_words("the and of") == []


def test_holds_needs_every_content_word_as_a_token() -> None:
    assert holds("Fluoride target: 0.7 mg/L", "The target for fluoride is 0.7 mg/L [1].")
    assert not holds("Fluoride target: 0.7 mg/L", "The target for fluoride is 0.8 mg/L.")
    assert not holds("within 45 minutes", "within 450 minutes")  # tokens, not substrings
    assert not holds("", "anything")  # nothing to check is not a pass


def test_degenerate() -> None:
    assert degenerate("call the plant now. " * 3)  # a 4-gram three times
    assert degenerate("Flush the main first. Then sample it. Flush the main first.")  # a sentence twice
    assert degenerate("1. 1. 1. 2. 3. 4. 5. 6. 7. 8. 9. 10. 11. 12. 13. 14. 15. 16. 17. 18. 19. 20.")
    assert not degenerate("Backwash at 8 feet of head loss [1]. Run to waste for 15 minutes [1].")
    assert not degenerate("Yes. Yes.")  # short repeats are not loops


def test_echoes() -> None:
    assert echoes("It is 0.7 mg/L.\nQuestion: what is the fluoride target?")
    instruction = "Answer briefly using the passages above and cite the passage number in brackets, like [1]."
    assert echoes(f"It is 0.7 mg/L. {instruction}")
    assert not echoes("The fluoride target is 0.7 mg/L [1].")


def test_invalid_citations() -> None:
    assert invalid_citations("See [1] and [3], also [4] and [0].", shown=3) == [4, 0]
    assert invalid_citations("No markers here.", shown=3) == []


def test_says_refusal() -> None:
    assert says_refusal("The knowledge base does not cover this question.")
    assert says_refusal("The passages do not mention the deposit.")
    assert not says_refusal("The deposit is $150 [1].")
    # an echo of the prompt's instruction is not the model refusing
    echo = "1. [1] Class A. Question: how often? If the passages do not answer the question, say so."
    assert not says_refusal(echo)
    instruction = "If the passages do not answer the question, say that the knowledge base does not cover it."
    assert not says_refusal(f"It runs three times a week [1]. {instruction}")


def test_extractive_picks_the_sentences_sharing_most_question_words_in_order() -> None:
    passages = [
        "The plant has eight filters. A filter is backwashed when head loss reaches 8 feet.",
        "Backwash water is recovered. Filters run to waste after a backwash.",
    ]
    # question words: filter, backwashed, head, loss -> sentence 2 shares all 4; the others share none
    # ("filters" and "backwash" are other tokens), so only one sentence qualifies
    assert extractive("when is a filter backwashed for head loss?", passages, 2) == (
        "A filter is backwashed when head loss reaches 8 feet."
    )
    # many, filters, run, waste, backwash -> sentence 4 shares 4; sentences 1 and 3 tie at 1: the earlier wins
    two = extractive("how many filters run to waste after backwash", passages, 2)
    assert two == "The plant has eight filters. Filters run to waste after a backwash."
    assert extractive("unrelated words entirely", passages, 2) == ""


def test_percentile_interpolates_like_numpy() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 90) == pytest.approx(46.0)
    assert percentile([], 50) is None


def test_rate_carries_the_wilson_interval() -> None:
    r = rate(7, 10)
    assert r["rate"] == 0.7
    assert r["ci95"] == [0.397, 0.892]  # Wilson, z = 1.96: (0.3968, 0.8922)
    assert rate(0, 0)["rate"] is None
