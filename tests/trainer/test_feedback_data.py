"""trainer.feedback_data: examples from the store (choices, ties, thumbs, corrections, filters,
snapshot), and our exports read back as the same examples."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import trainer.feedback_data
from feedback import Store
from feedback.export import export_demonstrations, export_preferences, export_thumbs
from tests.feedback.factory import FakeClock, make_record
from trainer.errors import DataError, TrainerError
from trainer.examples import prompt_id
from trainer.feedback_data import Snapshot, load_feedback
from trainer.jsonl import read_jsonl_demonstrations, read_jsonl_preferences, read_jsonl_thumbs

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

    real_votes = trainer.feedback_data._votes

    def votes_while_the_service_writes(*args: Any) -> Any:
        store.vote("p3", "u2", "down")  # written during the read: not in this snapshot
        return real_votes(*args)

    monkeypatch.setattr(trainer.feedback_data, "_votes", votes_while_the_service_writes)
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
