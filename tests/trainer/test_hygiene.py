"""trainer.hygiene: dedupe, the per-user cap, position balance and the held-out split."""

from __future__ import annotations

from typing import Any

import pytest

from rag.prompting import Passage, question_message
from trainer.examples import Demonstration, PreferencePair, ThumbExample, Tie, prompt_id
from trainer.hygiene import _unit, balance_positions, cap_per_user, dedupe, paraphrase_groups, split_by_prompt


def pair(
    chosen: str, rejected: str, user: str | None = "u1", position: Any = "left", prompt: str = "q"
) -> PreferencePair:
    return PreferencePair(prompt, chosen, rejected, prompt_id(prompt), user, position, "comparison")


def thumb(completion: str, label: bool, user: str | None = "u1", prompt: str = "q") -> ThumbExample:
    return ThumbExample(prompt, completion, label, (), prompt_id(prompt), user, "vote")


def test_dedupe_keeps_identical_examples_once_and_counts_conflicts() -> None:
    pairs = [pair("a", "b", "u1"), pair("a", "b", "u2", "right"), pair("b", "a", "u3"), pair("c", "b")]
    kept, counts = dedupe(pairs)
    assert kept == [pairs[0], pairs[2], pairs[3]]  # the second says what the first said
    assert counts == {"duplicates": 1, "conflicts": 1}  # a over b and b over a: both kept

    thumbs = [
        thumb("x", True),
        thumb("x", True, "u2"),
        thumb("x", False, "u3"),
        thumb("x", True, prompt="q2"),
    ]
    kept_thumbs, counts = dedupe(thumbs)
    assert kept_thumbs == [thumbs[0], thumbs[2], thumbs[3]] and counts == {"duplicates": 1, "conflicts": 1}

    ties = [
        Tie("q", "a", "b", "i", "u1", "tie"),
        Tie("q", "b", "a", "i", "u2", "tie"),
        Tie("q", "a", "b", "i", "u3", "both_bad"),
    ]
    assert dedupe(ties) == ([ties[0], ties[2]], {"duplicates": 1, "conflicts": 1})
    demos = [Demonstration("q", "a", "i", "golden", None), Demonstration("q", "a", "i", "correction", "u1")]
    assert dedupe(demos) == ([demos[0]], {"duplicates": 1, "conflicts": 0})


def test_cap_per_user_is_seeded_and_exact() -> None:
    items = [thumb(f"a{i}", True, "alice") for i in range(10)] + [
        thumb(f"b{i}", True, "bob") for i in range(3)
    ]
    items += [thumb(f"j{i}", True, None) for i in range(5)]  # JSONL rows have no user: never capped
    kept, dropped = cap_per_user(items, 4, seed=7)
    assert dropped == {"alice": 6}
    assert [t.user_id for t in kept].count("alice") == 4 and len(kept) == 4 + 3 + 5
    assert [items.index(t) for t in kept] == sorted(items.index(t) for t in kept)  # order kept
    assert cap_per_user(items, 4, seed=7) == (kept, dropped)
    draws = {
        tuple(t.completion for t in cap_per_user(items, 4, seed=s)[0] if t.user_id == "alice")
        for s in range(8)
    }
    assert len(draws) > 1  # another seed, another draw
    # a user's draw depends on their own items only
    assert [t for t in cap_per_user(items[:10], 4, seed=7)[0]] == [t for t in kept if t.user_id == "alice"]
    with pytest.raises(ValueError, match="cap"):
        cap_per_user(items, 0, seed=0)


def test_balance_positions_gives_both_sides_equal_weight() -> None:
    pairs = [pair("a", "b"), pair("c", "d"), pair("e", "f"), pair("g", "h", position="right")]
    pairs.append(PreferencePair("q", "i", "j", "x", None, None, "jsonl", weight=0.5))
    balanced, report = balance_positions(pairs)
    assert [p.weight for p in balanced] == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2.0, 0.5])
    assert sum(p.weight for p in balanced[:3]) == pytest.approx(2.0)  # left total = right total
    assert report == {
        "left": 3,
        "right": 1,
        "unpositioned": 1,
        "left_win_share": 0.75,
        "factors": pytest.approx({"left": 2 / 3, "right": 2.0}),
    }

    weighted = [replace_weight(pair("a", "b"), 3.0), pair("c", "d", position="right")]
    assert [p.weight for p in balance_positions(weighted)[0]] == pytest.approx([2.0, 2.0])

    one_sided, report = balance_positions([pair("a", "b"), pair("c", "d")])
    assert [p.weight for p in one_sided] == [1.0, 1.0] and report["factors"] is None
    assert report["left_win_share"] == 1.0
    assert balance_positions([])[1]["left_win_share"] is None


def replace_weight(p: PreferencePair, weight: float) -> PreferencePair:
    from dataclasses import replace

    return replace(p, weight=weight)


def test_split_by_prompt_never_shares_a_prompt_and_is_a_function_of_the_question() -> None:
    items = [thumb(f"answer {k}", k % 2 == 0, prompt=f"question {k % 40}") for k in range(200)]
    train, heldout = split_by_prompt(items, 0.25)
    assert len(train) + len(heldout) == 200 and heldout
    assert not {t.prompt_id for t in train} & {t.prompt_id for t in heldout}
    assert 4 <= len({t.prompt_id for t in heldout}) <= 18  # about a quarter of 40 prompts
    # the side of a question is its normalised-text hash's: no seed, no order, no other example matters
    assert split_by_prompt(items[::-1], 0.25) == (train[::-1], heldout[::-1])
    shouted = [thumb("x", True, prompt=f"  QUESTION   {k % 40} ") for k in range(40)]
    assert {t.prompt_id for t in split_by_prompt(shouted, 0.25)[1]} == {t.prompt_id for t in heldout}
    # a held-out prompt stays held out when more data arrives (the next round, the next refresh)
    more = items + [thumb("new", True, prompt=f"question {k}") for k in range(40, 60)]
    assert {t.prompt_id for t in heldout} <= {t.prompt_id for t in split_by_prompt(more, 0.25)[1]}
    # the same question with other passages is the same prompt
    rag = [
        thumb("a", True, prompt=f"<s>{question_message([Passage(1, 'c', 's', 't', '', p)], 'Where?')}")
        for p in "xyz"
    ]
    assert len({t.prompt_id for t in rag}) == 1

    # few prompts: one stays in train; two or more with a fraction > 0 hold one out
    one = [thumb("a", True), thumb("b", False)]
    assert split_by_prompt(one, 0.9) == (one, [])
    two = [thumb("a", True, prompt="q1"), thumb("b", True, prompt="q2")]
    train2, held2 = split_by_prompt(two, 0.99)
    assert len(train2) == 1 and len(held2) == 1
    assert split_by_prompt(two, 0.0) == (two, [])
    with pytest.raises(ValueError, match="heldout_fraction"):
        split_by_prompt(two, 1.0)


# paraphrases of one question (MiniLM cosine >= PARAPHRASE_COSINE with at least one other of the group)
# and distinct questions on the same topics
PARAPHRASES = [
    "deadline for the postmortem draft?",
    "when is the postmortem draft due",
    "by when must the postmortem draft be written",
]
DISTINCT = [f"question {k} about parking" for k in range(30)] + [
    "how long do we have to finish postmortem action items",
    "how often do engineers get a new laptop?",
]


def test_paraphrases_share_one_side_chosen_by_their_smallest_hash(embedder: Any) -> None:
    items = [thumb("a", True, prompt=q) for q in PARAPHRASES + DISTINCT]
    groups = paraphrase_groups({t.prompt_id: t.prompt for t in items}, embedder.encode)
    ids = [t.prompt_id for t in items[: len(PARAPHRASES)]]
    assert len({groups[i] for i in ids}) == 1 and groups[ids[0]] == min(ids)  # one group, its smallest id
    assert all(groups[t.prompt_id] == t.prompt_id for t in items[len(PARAPHRASES) + 30 :])  # alone
    for fraction in (0.1, 0.3, 0.5, 0.7):
        _, held = split_by_prompt(items, fraction, embed=embedder.encode)
        sides = {t.prompt in {h.prompt for h in held} for t in items[: len(PARAPHRASES)]}
        assert len(sides) == 1  # the paraphrases are all in train or all held out
        # the group's side is that of its smallest hash
        assert sides == {_unit(min(ids)) < fraction}
