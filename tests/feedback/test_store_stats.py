"""The Store's statistics: the right rows reach the pure functions (current votes, windows, versions)."""

from __future__ import annotations

import pytest

from feedback import Store
from feedback.errors import InvalidFilter
from feedback.stats import Rate
from tests.feedback.factory import make_record


def _answers(store: Store) -> None:
    # m1 served on the 23rd (a0..a3) and the 24th (a4, a5), m2 on the 23rd (b0, b1)
    for i in range(6):
        day = "23" if i < 4 else "24"
        store.record_answer(
            make_record(f"a{i}", model_version="m1", created_at=f"2026-11-{day}T12:00:00.000Z")
        )
    for i in range(2):
        store.record_answer(make_record(f"b{i}", model_version="m2", created_at="2026-11-23T12:00:00.000Z"))


def test_thumbs_stats_count_current_votes_per_version_and_serving_day(store: Store) -> None:
    _answers(store)
    store.vote("a0", "u1", "up")
    store.vote("a0", "u2", "up")
    store.vote("a1", "u1", "up")
    store.vote("a1", "u1", "down", reasons=["incorrect"])  # changed: only the current value counts
    store.vote("a2", "u1", "up")
    store.vote("a2", "u1", "none")  # withdrawn: not counted
    store.vote("a4", "u1", "up")
    store.vote("b0", "u1", "down", reasons=["outdated", "incorrect"])
    store.vote("b1", "u1", "down")

    m1, m2 = store.thumbs_stats()
    assert (m1.model_version, m1.up, m1.down) == ("m1", 3, 1)
    assert m1.overall == Rate.of(3, 4)
    assert m1.by_day == {"2026-11-23": Rate.of(2, 3), "2026-11-24": Rate.of(1, 1)}
    assert (m2.up, m2.down, m2.overall.rate) == (0, 2, 0.0)

    # windows are on when the answer was served; model_version picks one version
    (only,) = store.thumbs_stats(since="2026-11-24")
    assert (only.model_version, only.up, only.down) == ("m1", 1, 0)
    assert [m.model_version for m in store.thumbs_stats(model_version="m2")] == ["m2"]
    assert store.thumbs_stats(until="2026-11-01") == []

    m1_reasons, m2_reasons = store.reason_stats()
    assert (m1_reasons.down_votes, m1_reasons.counts["incorrect"]) == (1, 1)
    assert (m2_reasons.down_votes, m2_reasons.without_reason, m2_reasons.counts["outdated"]) == (2, 1, 1)
    assert store.reason_stats(model_version="m1") == [m1_reasons]


def _compare(store: Store, user: str, left: str, right: str, choice: str | None) -> None:
    shown = store.create_comparison(user, left, right)
    if choice is not None:
        store.choose(shown.comparison_id, user, choice)


def test_comparison_statistics(store: Store) -> None:
    _answers(store)
    _compare(store, "u1", "a0", "b0", "A")  # m1 wins, on the left
    _compare(store, "u1", "b1", "a1", "A")  # m2 wins, on the left
    _compare(store, "u2", "a2", "b0", "A")  # m1 wins, on the left
    _compare(store, "u2", "b0", "a3", "tie")
    _compare(store, "u3", "a0", "b1", "both_bad")
    _compare(store, "u3", "a0", "a1", "B")  # one version against itself
    _compare(store, "u3", "a2", "b1", None)  # shown, never chosen

    (pair,) = store.win_rates()
    assert (pair.model_a, pair.model_b, pair.wins_a, pair.wins_b, pair.ties, pair.both_bad) == (
        "m1",
        "m2",
        2,
        1,
        1,
        1,
    )
    assert pair.win_rate_a == Rate.of(2.5, 4)

    bias = store.position_bias()  # every decisive choice counts, self-comparisons too
    assert (bias.decisive, bias.left_wins) == (4, 3)

    ranking = store.ranking(resamples=200, seed=1)
    assert [r.model_version for r in ranking] == ["m1", "m2"]
    assert ranking[0].strength > 1 > ranking[1].strength
    assert all(r.low <= r.strength <= r.high for r in ranking)
    assert store.ranking(resamples=200, seed=1) == ranking
    assert store.ranking(since="2030-01-01") == [] and store.win_rates(since="2030-01-01") == []


def test_statistics_of_an_empty_store(store: Store) -> None:
    assert store.thumbs_stats() == store.reason_stats() == store.win_rates() == store.ranking() == []
    assert store.position_bias().decisive == 0


def test_malformed_windows_are_invalid_filters(store: Store) -> None:
    with pytest.raises(InvalidFilter, match="since"):
        store.thumbs_stats(since="last week")
    with pytest.raises(InvalidFilter, match="until"):
        store.ranking(until="soon")
