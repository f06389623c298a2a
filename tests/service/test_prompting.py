from __future__ import annotations

from rag.prompting import (
    PROMPT_TEMPLATE_HASH,
    REFUSAL_TEXT,
    Passage,
    build_messages,
    cited_numbers,
    question_message,
    refusal_answer,
    retrieval_query,
)

P1 = Passage(1, "c1", "policies/parking.md", "Parking Policy", "Permits", "Permits cost 45 dollars a month.")
P2 = Passage(2, "c2", "policies/vpn.md", "VPN", "Troubleshooting", "Restart the client.")


def test_follow_ups_are_searched_with_the_previous_question() -> None:
    assert retrieval_query(["How much is a parking permit?"]) == "How much is a parking permit?"
    turns = ["How much is a parking permit?", "and where do I get it?"]
    assert retrieval_query(turns) == "How much is a parking permit? and where do I get it?"
    assert retrieval_query(["How much is a parking permit?", "EV charging?"]).startswith("How much")
    standalone = ["How much is a parking permit?", "Which VPN client do engineers install on laptops?"]
    assert retrieval_query(standalone) == standalone[1]
    assert retrieval_query([]) == ""


def test_question_message_numbers_passages_and_hash_is_stable() -> None:
    text = question_message([P1, P2], " How much is a permit? ")
    assert text.startswith("[1] Permits cost 45 dollars a month.\n\n[2] Restart the client.")
    assert "Question: How much is a permit?\n" in text
    assert "cite" in text.lower() and len(PROMPT_TEMPLATE_HASH) == 16


def words(messages: list[dict[str, str]]) -> int:
    return sum(len(m["content"].split()) for m in messages)


def test_build_messages_drops_oldest_turns_then_passages() -> None:
    conversation = [
        {"role": "user", "content": "first question " * 20},
        {"role": "assistant", "content": "first answer " * 20},
        {"role": "user", "content": "second question"},
    ]
    full, dropped = build_messages(conversation, [P1, P2], words, budget=10_000)
    assert dropped == 0 and [m["role"] for m in full] == ["user", "assistant", "user"]
    assert full[0]["content"] == conversation[0]["content"]
    budget = words(full) - 1  # one word too many: the oldest exchange goes, the question stays
    trimmed, dropped = build_messages(conversation, [P1, P2], words, budget=budget)
    assert dropped == 2 and [m["role"] for m in trimmed] == ["user"]
    assert "Question: second question" in trimmed[-1]["content"]
    tiny, _ = build_messages(conversation, [P1, P2], words, budget=words(trimmed) - 3)
    assert "[2]" not in tiny[0]["content"] and "[1]" in tiny[0]["content"]  # passages go from the end


def test_cited_numbers_and_refusal_text() -> None:
    assert cited_numbers("Permits cost $45 [1]. See also [3] and [1][2].", available=2) == [1, 2]
    assert cited_numbers("no citations", available=2) == []
    refusal = refusal_answer([P1])
    assert refusal.startswith(REFUSAL_TEXT) and "policies/parking.md" in refusal
    assert refusal_answer([]) == REFUSAL_TEXT


def test_uncited_answers_are_attributed_by_shared_words() -> None:
    from rag.prompting import attributed_numbers

    answer = "1. The parking permit costs 45 dollars per month.\n2. Restart the VPN client when it drops."
    passages = [P2, P1]  # numbers 2 and 1, in that order
    assert attributed_numbers(answer, passages) == [1, 2]
    assert attributed_numbers("I like turtles and sunny weather.", passages) == []
    # one shared word is not enough
    assert attributed_numbers("The client is great.", passages) == []
