"""The answer checks (rag/grounding.py) on hand-written answers: each check fires on its failure and
stays quiet on a clean answer."""

from __future__ import annotations

from rag.grounding import (
    StreamingCheck,
    check_answer,
    degeneration,
    drop_invalid_markers,
    echo,
    facts,
    grounding,
    invalid_markers,
    repeated_ngram_share,
    says_not_covered,
)

PASSAGES = [
    "New employees get 15 vacation days in their first year. The holiday calendar has 11 paid holidays.",
    "Report a stolen laptop to the IT help desk at extension 4357 or helpdesk@acme.example within 1 hour.",
]


def test_invalid_markers_are_found_and_dropped() -> None:
    assert invalid_markers("See [1], [4] and [4] again, [0].", shown=2) == [4, 0]
    assert drop_invalid_markers("Call IT [4]. Then report it [2].", shown=2) == "Call IT. Then report it [2]."


def test_a_loop_is_degenerate_and_a_plain_answer_is_not() -> None:
    loop = "The passage 1 is about the 11 paid holidays. " * 3
    assert degeneration(loop) is not None
    assert degeneration("New employees get 15 vacation days [1].") is None
    assert degeneration("[1] [2] [3]") == "only citation markers"
    # 8 words -> 5 four-grams; "a b c d" appears twice: 1 of 5 repeats
    assert repeated_ngram_share("a b c d a b c d") == 1 - 4 / 5


def test_echo_of_the_prompt() -> None:
    assert echo("Question: Who do I call? Answer briefly using the passages above") is not None
    assert echo("Passage 2 says to call IT.") is not None
    assert echo("who do i call if my laptop is stolen", "Who do I call if my laptop is stolen?") is not None
    assert echo("Call the IT help desk at extension 4357 [2].", "Who do I call?") is None


def test_facts_and_grounding() -> None:
    answer = "Call Ananya Rao at extension 5555 or helpdesk@acme.example [2]. The Office is open."
    assert facts(answer) == ["helpdesk@acme.example", "5555", "Ananya Rao"]
    share, missing = grounding(answer, [PASSAGES[1]])
    assert missing == ["5555", "Ananya Rao"] and share == 1 - 2 / 3
    assert grounding("Yes, you can.", PASSAGES) == (1.0, [])


def test_check_answer_names_every_failure() -> None:
    good = check_answer("Report it to the IT help desk at extension 4357 [2].", "stolen laptop?", PASSAGES)
    assert good.ok and good.cites == [2] and good.grounding == 1.0
    bad = check_answer("Call extension 5555 [4].", "stolen laptop?", PASSAGES)
    assert not bad.ok and bad.invalid_markers == [4]
    assert any("5555" in f for f in bad.failures) and any("not shown" in f for f in bad.failures)


def test_streaming_check_shows_good_sentences_and_stops_at_the_first_bad_one() -> None:
    check = StreamingCheck("How many vacation days do new employees get?", PASSAGES)
    shown = ""
    for piece in ["New employees get 15 vac", "ation days [1]. The passage 1 is about", " the 11 days. More"]:
        shown += check.feed(piece)
    shown += check.finish()
    assert shown == "New employees get 15 vacation days [1]."
    assert check.failed is not None and "echoes" in check.failed


def test_streaming_check_drops_invalid_markers_and_keeps_line_breaks() -> None:
    check = StreamingCheck("q", PASSAGES)
    shown = check.feed("Call extension 4357 [2]. Email helpdesk@acme.example [4].\nDone") + check.finish()
    assert shown == "Call extension 4357 [2]. Email helpdesk@acme.example.\nDone"
    assert check.failed is None


def test_streaming_check_refuses_an_invented_number_and_a_stock_refusal() -> None:
    check = StreamingCheck("q", PASSAGES)
    assert check.feed("Call extension 5555 [2]. Then go home. ") == ""
    assert check.failed is not None and "5555" in check.failed
    refusal = StreamingCheck("q", PASSAGES)
    assert refusal.feed("The passages do not cover this question. ") == ""
    assert says_not_covered("The knowledge base does not cover it.")
    assert not says_not_covered("It covers 15 days.")


def test_an_answer_is_held_back_until_it_addresses_the_question() -> None:
    question = "How many vacation days do new employees get?"
    on_topic = StreamingCheck(question, PASSAGES, min_coverage=0.75)
    assert on_topic.feed("The calendar has 11 paid holidays [1]. ") == ""  # passes, but off the question
    shown = on_topic.feed("New employees get 15 vacation days [1]. They")
    assert shown == "The calendar has 11 paid holidays [1]. New employees get 15 vacation days [1]."
    off_topic = StreamingCheck(question, PASSAGES, min_coverage=0.75)
    assert off_topic.feed("The calendar has 11 paid holidays [1]. ") == "" and off_topic.finish() == ""
    assert off_topic.failed is not None and "does not address" in off_topic.failed
    assert off_topic.shown == ""  # the caller replaces it


def test_an_answer_to_how_many_is_held_back_until_it_states_a_quantity() -> None:
    passages = ["New employees get vacation days in their first year, and many employees carry them over."]
    question = "How many vacation days do new employees get?"
    vague = StreamingCheck(question, passages, min_coverage=0.75)
    # covers the question's words, grounded, but says no number: never shown, and the answer fails
    assert vague.feed("1. New employees get vacation days in their first year [1]. ") == ""
    assert (
        vague.finish() == "" and vague.failed == "states no quantity or time, and the question asks for one"
    )
    counted = StreamingCheck("How many vacation days do new employees get?", PASSAGES, min_coverage=0.75)
    assert (
        counted.feed("New employees get 15 vacation days [1]. They")
        == "New employees get 15 vacation days [1]."
    )
    open_question = StreamingCheck("Who gets vacation days?", passages, min_coverage=0.5)
    assert open_question.feed("New employees get vacation days in their first year [1]. They") != ""


def test_an_answer_held_back_for_three_sentences_fails_without_decoding_the_rest() -> None:
    check = StreamingCheck("How many vacation days do new employees get?", PASSAGES, min_coverage=0.75)
    off = "The calendar has 11 paid holidays [1]. "
    assert check.feed(off + "Report a stolen laptop within 1 hour [2]. ") == "" and check.failed is None
    assert check.feed("Report it at extension 4357 [2]. New employees get 15 vacation days [1]. ") == ""
    assert check.failed == "does not address the question in 3 sentences" and check.shown == ""
    assert check.feed("More.") == "" and check.finish() == ""  # nothing after the failure is shown
    patient = StreamingCheck("How many vacation days?", PASSAGES, min_coverage=0.75, max_held_sentences=0)
    patient.feed(off + "Report a stolen laptop within 1 hour [2]. Report it at extension 4357 [2]. New")
    assert patient.failed is None  # 0: no limit
