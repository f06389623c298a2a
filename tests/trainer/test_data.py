"""The trainer's datasets: examples from the store (choices, ties, thumbs, corrections, filters, snapshot),
the hygiene functions, and the TRL JSONL readers."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainer.data
from feedback import Store
from feedback.export import export_demonstrations, export_preferences, export_thumbs
from rag.prompting import Passage, question_message
from tests.conftest import REPO
from tests.feedback.factory import FakeClock, make_record
from tests.service.tiny import tiny_tokenizer
from trainer.data import (
    Demonstration,
    PreferencePair,
    Snapshot,
    ThumbExample,
    Tie,
    _unit,
    balance_positions,
    cap_per_user,
    correction_pairs,
    dedupe,
    detect_jsonl_kind,
    load_feedback,
    paraphrase_groups,
    prompt_id,
    read_jsonl_demonstrations,
    read_jsonl_preferences,
    read_jsonl_thumbs,
    render_messages,
    render_prompts,
    split_by_prompt,
)
from trainer.errors import DataError, TrainerError

PROMPT = "<|user|>[1] 25 days...\nQuestion: vacation?<|assistant|>"
OTHER_PROMPT = "<|user|>[1] other passage\nQuestion: vacation?<|assistant|>"
REFUSAL = "The knowledge base does not cover this question."
SHORT, LONG, OTHER = "25 days [1].", "You get 25 vacation days [1].", "Twenty-five days."


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(tmp_path / "feedback.db", clock=clock) as s:
        for answer_id, model, prompt, answer, refused in [
            ("p1", "m1", PROMPT, SHORT, False),
            ("p2", "m2", PROMPT, LONG, False),
            ("p3", "m2", OTHER_PROMPT, "No idea.", False),
            ("p4", "m2", PROMPT, SHORT, False),  # the same text as p1, sampled again
            ("r1", "m2", "", REFUSAL, True),
            ("r2", "m1", "", REFUSAL, True),
            ("e1", "m2", PROMPT, " ", False),
            ("p5", "m1", PROMPT, OTHER, False),
        ]:
            s.record_answer(
                make_record(answer_id, model_version=model, prompt=prompt, answer=answer, refused=refused)
            )
        yield s


def decide(
    store: Store, clock: FakeClock, day: str, left: str, right: str, choice: str, user: str = "u-bob"
) -> str:
    clock.set(f"2026-11-{day}T12:00:00.000Z")
    shown = store.create_comparison(user, left, right)
    store.choose(shown.comparison_id, user, choice)
    return shown.comparison_id


def test_choices_give_the_chosen_side_from_the_recorded_positions(store: Store, clock: FakeClock) -> None:
    ids = [
        decide(store, clock, "20", "p1", "p2", "A"),  # left chosen
        decide(store, clock, "21", "p2", "p1", "A"),
        decide(store, clock, "22", "p1", "p5", "B"),  # right chosen
        decide(store, clock, "23", "p5", "p1", "B"),
        decide(store, clock, "24", "p2", "p1", "B", user="u-carol"),  # says what the first said
    ]
    data = load_feedback(store)
    assert [(p.chosen, p.rejected, p.chosen_position) for p in data.pairs] == [
        (SHORT, LONG, "left"),
        (LONG, SHORT, "left"),
        (OTHER, SHORT, "right"),
        (SHORT, OTHER, "right"),
    ]
    first = data.pairs[0]
    assert (first.prompt, first.prompt_id, first.user_id, first.source) == (
        PROMPT, prompt_id(PROMPT), "u-bob", "comparison",
    )  # fmt: skip
    assert [p.comparison_id for p in data.pairs] == ids[:4]
    assert all(p.weight == 1.0 for p in data.pairs)  # two left, two right: already balanced
    assert data.report["positions"]["left_win_share"] == 0.5
    assert data.report["dedupe"]["pairs"] == {"duplicates": 1, "conflicts": 2}
    assert data.skipped == {"pairs.duplicate": 1}


def test_ties_and_both_bad(store: Store, clock: FakeClock) -> None:
    decide(store, clock, "20", "p1", "p2", "tie")
    bad = decide(store, clock, "21", "p2", "p1", "both_bad", user="u-carol")
    data = load_feedback(store)
    assert data.pairs == ()
    assert [(t.kind, t.a, t.b, t.user_id) for t in data.ties] == [
        ("tie", SHORT, LONG, "u-bob"),
        ("both_bad", LONG, SHORT, "u-carol"),
    ]
    assert data.ties[1].comparison_id == bad
    # both answers of a both_bad were judged bad: two explicit thumbs down, counted apart from votes
    assert [(t.completion, t.label, t.source, t.answer_id, t.user_id) for t in data.thumbs] == [
        (LONG, False, "both_bad", "p2", "u-carol"),
        (SHORT, False, "both_bad", "p1", "u-carol"),
    ]
    assert data.report["read"] == {
        "pairs": 0, "ties": 1, "both_bad": 1, "thumbs_up": 0, "thumbs_down": 0, "both_bad_thumbs": 2,
        "demonstrations": 0,
    }  # fmt: skip


def test_rows_that_make_no_sound_example_are_skipped_as_the_export_skips_them(
    store: Store, clock: FakeClock
) -> None:
    decide(store, clock, "20", "p1", "p3", "A")  # other passages: not one prompt
    decide(store, clock, "20", "r1", "r2", "A")  # two refusals: no prompt
    decide(store, clock, "20", "p1", "e1", "A")  # an empty answer
    decide(store, clock, "20", "p1", "p4", "B")  # the same text twice: nothing to learn
    decide(store, clock, "21", "p1", "r1", "B")  # the refusal preferred: the other side's prompt
    decide(store, clock, "21", "r1", "p1", "both_bad")
    data = load_feedback(store)
    assert [(p.prompt, p.chosen, p.rejected, p.chosen_position) for p in data.pairs] == [
        (PROMPT, REFUSAL, SHORT, "right")
    ]
    assert [t.prompt for t in data.ties] == [PROMPT]
    assert data.skipped == {
        "comparison.prompt_mismatch": 1,
        "comparison.no_prompt": 1,
        "comparison.empty_answer": 1,
        "comparison.identical_answers": 1,
    }
    assert export_preferences(store, io.StringIO()).skipped == {
        "tie": 0, "both_bad": 1, "prompt_mismatch": 1, "no_prompt": 1, "empty_answer": 1,
    }  # fmt: skip


def test_current_votes_become_thumbs(store: Store, clock: FakeClock) -> None:
    store.vote("p1", "u1", "up")
    store.vote("p2", "u1", "down", reasons=["incorrect", "too_long"])
    store.vote("p2", "u2", "up")
    store.vote("p3", "u1", "down")
    store.vote("p3", "u1", "up")  # changed: the current value counts
    store.vote("p4", "u1", "up")
    store.vote("p4", "u1", "none")  # withdrawn
    store.vote("r1", "u1", "down")  # a refusal has no prompt
    store.vote("e1", "u1", "down")
    data = load_feedback(store)
    assert [(t.answer_id, t.user_id, t.label, t.reasons) for t in data.thumbs] == [
        ("p1", "u1", True, ()),
        ("p2", "u1", False, ("incorrect", "too_long")),
        ("p2", "u2", True, ()),
        ("p3", "u1", True, ()),
    ]
    assert data.thumbs[3].prompt == OTHER_PROMPT and data.thumbs[3].source == "vote"
    assert data.skipped == {"vote.withdrawn": 1, "vote.no_prompt": 1, "vote.empty_answer": 1}
    assert (data.report["read"]["thumbs_up"], data.report["read"]["thumbs_down"]) == (3, 1)
    assert data.report["dedupe"]["thumbs"] == {"duplicates": 0, "conflicts": 1}  # p2: up and down


def test_the_newest_correction_of_each_user_wins(store: Store, clock: FakeClock) -> None:
    clock.set("2026-11-23T12:00:00.000Z")
    store.add_correction("p1", "u1", "Employees get 25 days [1].")
    clock.set("2026-11-24T12:00:00.000Z")
    store.add_correction("p1", "u1", "Employees get 25 paid vacation days a year [1].")
    store.add_correction("p1", "u2", "25 days.")
    store.add_correction("r1", "u1", "The handbook says 25 days.")  # a refusal: no rendered prompt
    data = load_feedback(store)
    assert [(d.completion, d.user_id, d.source, d.answer_id) for d in data.demonstrations] == [
        ("Employees get 25 paid vacation days a year [1].", "u1", "correction", "p1"),
        ("25 days.", "u2", "correction", "p1"),
    ]
    assert data.demonstrations[0].prompt == PROMPT and data.demonstrations[0].messages is None
    assert [d.corrected for d in data.demonstrations] == [SHORT, SHORT]  # what each one replaced
    assert data.skipped == {"correction.superseded": 1, "correction.no_prompt": 1}
    # before the 24th, the first correction was the newest
    early = load_feedback(store, until="2026-11-24")
    assert [d.completion for d in early.demonstrations] == ["Employees get 25 days [1]."]


def test_since_until_and_model_version_filters(store: Store, clock: FakeClock) -> None:
    decide(store, clock, "20", "p1", "p2", "A")
    decide(store, clock, "21", "p1", "p2", "B")
    clock.set("2026-11-22T08:00:00.000Z")
    store.vote("p1", "u1", "up")
    store.vote("p3", "u1", "down")
    window = load_feedback(store, since="2026-11-21", until="2026-11-22")
    assert [p.chosen_position for p in window.pairs] == ["right"] and window.thumbs == ()
    assert (window.snapshot.since, window.snapshot.until) == (
        "2026-11-21T00:00:00.000Z",
        "2026-11-22T00:00:00.000Z",
    )
    assert len(load_feedback(store, since="2026-11-22T08:00:00Z").thumbs) == 2
    m2 = load_feedback(store, model_version="m2")
    assert len(m2.pairs) == 2 and [t.answer_id for t in m2.thumbs] == ["p3"]  # either side of a pair
    with pytest.raises(DataError, match="since"):
        load_feedback(store, since="yesterday")


def test_the_snapshot_records_what_was_read_and_reads_it_again(
    store: Store, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    decide(store, clock, "20", "p1", "p2", "A")
    open_one = store.create_comparison("u-bob", "p2", "p1")  # shown, chosen only later
    store.vote("p1", "u1", "up")
    store.vote("p2", "u1", "up")
    store.add_correction("p1", "u1", "Employees get 25 days [1].")

    real_votes = trainer.data._votes

    def votes_while_the_service_writes(*args: Any) -> Any:
        store.vote("p3", "u2", "down")  # written during the read: not in this snapshot
        return real_votes(*args)

    monkeypatch.setattr(trainer.data, "_votes", votes_while_the_service_writes)
    data = load_feedback(store)
    monkeypatch.undo()
    assert [t.answer_id for t in data.thumbs] == ["p1", "p2"]
    marks = data.snapshot.tables
    assert (marks["answers"].rows, marks["answers"].max_rowid) == (8, 8)
    assert (marks["votes"].rows, marks["vote_events"].max_rowid) == (2, 2)
    assert (marks["comparisons"].rows, marks["comparisons"].max_rowid) == (2, 2)
    assert marks["comparisons"].max_time == "2026-11-20T12:00:00.001Z"  # the newest choice
    assert (marks["corrections"].rows, marks["corrections"].max_rowid) == (1, 1)
    assert data.snapshot.schema_version == store.schema_version
    assert data.snapshot.db_path == str(store.path.resolve())
    manifest = json.loads(json.dumps(data.snapshot.to_json()))
    assert Snapshot.from_json(manifest) == data.snapshot

    # later: a vote changes, another is cast, the open comparison is chosen, a correction is revised
    clock.set("2026-11-25T12:00:00.000Z")
    store.vote("p1", "u1", "down", reasons=["outdated"])
    store.choose(open_one.comparison_id, "u-bob", "A")
    store.add_correction("p1", "u1", "Employees get 25 paid days [1].")
    now = load_feedback(store)
    assert (
        len(now.pairs) == 2
        and len(now.thumbs) == 3
        and now.demonstrations[0].completion.endswith("paid days [1].")
    )
    again = load_feedback(store, as_of=Snapshot.from_json(manifest))
    assert (again.pairs, again.thumbs, again.demonstrations) == (data.pairs, data.thumbs, data.demonstrations)
    assert again.snapshot.tables == data.snapshot.tables
    with pytest.raises(DataError, match="as_of"):
        load_feedback(store, as_of=data.snapshot, since="2026-11-01")


def test_a_database_path_is_read_and_a_missing_one_is_a_data_error(
    store: Store, clock: FakeClock, tmp_path: Path
) -> None:
    decide(store, clock, "20", "p1", "p2", "A")
    assert len(load_feedback(store.path).pairs) == 1
    with pytest.raises(DataError, match="no feedback database") as caught:
        load_feedback(tmp_path / "nowhere.db")
    assert isinstance(caught.value, TrainerError) and not (tmp_path / "nowhere.db").exists()


def test_load_feedback_caps_each_user(store: Store, clock: FakeClock) -> None:
    for answer_id in ("p1", "p2", "p3", "p5"):
        store.vote(answer_id, "u-busy", "up")
    store.vote("p1", "u-quiet", "down")
    data = load_feedback(store, per_user_cap=2, seed=3)
    assert sorted(t.user_id or "" for t in data.thumbs) == ["u-busy", "u-busy", "u-quiet"]
    assert data.report["capped"]["thumbs"] == {"u-busy": 2}
    assert data.skipped["thumbs.per_user_cap"] == 2
    assert load_feedback(store, per_user_cap=2, seed=3).thumbs == data.thumbs  # seeded
    assert len(load_feedback(store, per_user_cap=None).thumbs) == 5


# -- hygiene ---------------------------------------------------------------------------------------


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


# -- JSONL -----------------------------------------------------------------------------------------


def write(path: Path, *rows: Any) -> Path:
    path.write_text(
        "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in rows), encoding="utf-8"
    )
    return path


CONVERSATION = [{"role": "user", "content": "How many vacation days?"}]


def test_preference_files_standard_and_conversational(tmp_path: Path) -> None:
    path = write(
        tmp_path / "prefs.jsonl",
        {"prompt": PROMPT, "chosen": SHORT, "rejected": LONG},
        "\n",
        {
            "prompt": CONVERSATION,
            "chosen": [{"role": "assistant", "content": "25."}],
            "rejected": [{"role": "assistant", "content": "30."}],
        },
        {
            "chosen": [*CONVERSATION, {"role": "assistant", "content": "25."}],
            "rejected": [*CONVERSATION, {"role": "assistant", "content": "30."}],
        },
    )
    assert detect_jsonl_kind(path) == "preferences"
    first, explicit, implicit = read_jsonl_preferences(path)
    assert first == PreferencePair(PROMPT, SHORT, LONG, prompt_id(PROMPT), None, None, "jsonl")
    assert explicit == implicit
    assert (explicit.prompt, explicit.chosen, explicit.rejected, explicit.prompt_messages) == (
        "",
        "25.",
        "30.",
        tuple(CONVERSATION),
    )
    assert explicit.prompt_id == prompt_id("How many vacation days?")
    rendered = render_prompts([first, explicit], tiny_tokenizer())
    assert rendered[0] == first
    assert (
        rendered[1].prompt == "<|im_start|>user\nHow many vacation days?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_thumbs_and_demonstration_files(tmp_path: Path) -> None:
    thumbs = write(
        tmp_path / "thumbs.jsonl",
        {"prompt": PROMPT, "completion": SHORT, "label": True},
        {"prompt": CONVERSATION, "completion": [{"role": "assistant", "content": "No."}], "label": False},
    )
    assert detect_jsonl_kind(thumbs) == "thumbs"
    up, down = read_jsonl_thumbs(thumbs)
    assert (up.prompt, up.completion, up.label, up.source) == (PROMPT, SHORT, True, "jsonl")
    assert (down.prompt, down.completion, down.label, down.prompt_messages) == (
        "",
        "No.",
        False,
        tuple(CONVERSATION),
    )

    demos = write(
        tmp_path / "sft.jsonl",
        {
            "messages": [
                {"role": "system", "content": "Be brief."},
                *CONVERSATION,
                {"role": "assistant", "content": "25 days."},
            ]
        },
        {"prompt": PROMPT, "completion": SHORT},
        {"prompt": CONVERSATION, "completion": [{"role": "assistant", "content": "25."}]},
    )
    assert detect_jsonl_kind(demos) == "demonstrations"
    chat, plain, split = read_jsonl_demonstrations(demos)
    assert (chat.prompt, chat.completion, chat.source, len(chat.messages or ())) == (
        "",
        "25 days.",
        "jsonl",
        3,
    )
    assert chat.prompt_id == prompt_id("How many vacation days?") == split.prompt_id
    assert (plain.prompt, plain.completion, plain.messages) == (PROMPT, SHORT, None)
    tokenizer = tiny_tokenizer()
    prompt, completion = render_messages(tokenizer, chat.messages or ())
    assert prompt.startswith("<|im_start|>system\nBe brief.<|im_end|>\n") and prompt.endswith(
        "<|im_start|>assistant\n"
    )
    assert completion == "25 days."
    assert render_prompts([chat], tokenizer)[0].prompt == prompt
    with pytest.raises(DataError, match="assistant"):
        render_messages(tokenizer, CONVERSATION)


def test_our_exports_read_back(store: Store, clock: FakeClock, tmp_path: Path) -> None:
    decide(store, clock, "20", "p1", "p2", "B")
    store.vote("p1", "u1", "up")
    store.add_correction("p1", "u1", "Employees get 25 days [1].")
    export_preferences(store, tmp_path / "p.jsonl")
    export_thumbs(store, tmp_path / "t.jsonl")
    export_demonstrations(store, tmp_path / "d.jsonl")
    export_demonstrations(store, tmp_path / "dp.jsonl", style="prompt")
    data = load_feedback(store)
    (p,) = read_jsonl_preferences(tmp_path / "p.jsonl")
    assert (p.prompt, p.chosen, p.rejected, p.prompt_id) == (PROMPT, LONG, SHORT, data.pairs[0].prompt_id)
    (t,) = read_jsonl_thumbs(tmp_path / "t.jsonl")
    assert (t.prompt, t.completion, t.label) == (PROMPT, SHORT, True)
    (d,) = read_jsonl_demonstrations(tmp_path / "d.jsonl")
    assert (
        d.completion == "Employees get 25 days [1]."
        and d.messages is not None
        and d.messages[-1]["role"] == "assistant"
    )
    (dp,) = read_jsonl_demonstrations(tmp_path / "dp.jsonl")
    assert (dp.prompt, dp.completion) == (data.demonstrations[0].prompt, data.demonstrations[0].completion)


@pytest.mark.parametrize(
    ("reader", "lines", "message"),
    [
        (
            read_jsonl_preferences,
            ['{"prompt": "q", "chosen": "a", "rejected": "b"}\n', '{"prompt": "q", "chosen": "a",\n'],
            r"bad\.jsonl:2: not valid JSON",
        ),
        (
            read_jsonl_preferences,
            ['{"prompt": "q", "chosen": "a", "rejected": "b"}\n', "\n", '{"prompt": "q", "chosen": "a"}\n'],
            r"bad\.jsonl:3: missing 'rejected'",
        ),
        (read_jsonl_preferences, ['["q", "a", "b"]\n'], r"bad\.jsonl:1: expected a JSON object"),
        (
            read_jsonl_preferences,
            ['{"prompt": "q", "chosen": [{"role": "user", "content": "a"}], "rejected": "b"}\n'],
            r":1: 'chosen' must end with an assistant message",
        ),
        (
            read_jsonl_preferences,
            [
                json.dumps(
                    {
                        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                        "rejected": [
                            {"role": "user", "content": "q2"},
                            {"role": "assistant", "content": "b"},
                        ],
                    }
                )
                + "\n"
            ],
            r":1: without 'prompt'",
        ),
        (
            read_jsonl_thumbs,
            ['{"prompt": "q", "completion": "a", "label": "yes"}\n'],
            r"bad\.jsonl:1: 'label' must be true or false",
        ),
        (
            read_jsonl_thumbs,
            ['{"prompt": "", "completion": "a", "label": true}\n'],
            r":1: 'prompt' must be a non-empty string",
        ),
        (
            read_jsonl_demonstrations,
            ['{"messages": [{"role": "user", "content": "q"}]}\n'],
            r":1: 'messages' must end with an assistant message",
        ),
        (read_jsonl_demonstrations, ['{"messages": [{"role": "user"}]}\n'], r":1: messages\[0\] must be"),
        (read_jsonl_demonstrations, ['{"prompt": "q"}\n'], r":1: 'completion' must be"),
    ],
)
def test_a_malformed_line_is_a_data_error_naming_file_and_line(
    tmp_path: Path, reader: Any, lines: list[str], message: str
) -> None:
    path = write(tmp_path / "bad.jsonl", *lines)
    with pytest.raises(DataError, match=message):
        reader(path)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    empty = write(tmp_path / "empty.jsonl", "\n  \n")
    for reader in (read_jsonl_preferences, read_jsonl_thumbs, read_jsonl_demonstrations, detect_jsonl_kind):
        with pytest.raises(DataError, match="no examples"):
            reader(empty)
        with pytest.raises(DataError, match="no such file"):
            reader(tmp_path / "missing.jsonl")
    with pytest.raises(DataError, match="unknown format"):
        detect_jsonl_kind(write(tmp_path / "odd.jsonl", {"text": "hello"}))
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(b'{"prompt": "caf\xe9", "completion": "a"}\n')
    with pytest.raises(DataError, match="UTF-8"):
        read_jsonl_demonstrations(latin)


def test_importing_trainer_data_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, trainer.data, trainer.prompts; "
        "print([m for m in ('torch', 'transformers') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"


def test_a_correction_is_a_pair_over_the_answer_it_replaced() -> None:
    def demo(completion: str, corrected: str | None, source: str = "correction") -> Demonstration:
        return Demonstration(PROMPT, completion, "pid", source, "u1", corrected=corrected)  # type: ignore[arg-type]

    pairs = correction_pairs(
        [
            demo("25 days [1].", "Some days."),
            demo("Same text.", " Same text. "),  # nothing changed: no preference
            demo("The golden answer [1].", None, "golden"),  # replaced nothing
            demo("A rewrite of nothing.", None),  # an answer without text
            demo("Ten days [2].", "Twenty days."),
        ]
    )
    assert [(p.chosen, p.rejected, p.source, p.chosen_position) for p in pairs] == [
        ("25 days [1].", "Some days.", "correction", None),
        ("Ten days [2].", "Twenty days.", "correction", None),
    ]
    assert all(p.prompt == PROMPT and p.prompt_id == "pid" and p.user_id == "u1" for p in pairs)
