from __future__ import annotations

import pytest

from rag.fusion import min_max, reciprocal_rank_fusion, top, weighted_fusion


def test_rrf_hand_computed() -> None:
    # dense ranks: 7, 3, 9; lexical ranks: 3, 5
    fused = reciprocal_rank_fusion([[7, 3, 9], [3, 5]], k=60)
    assert fused[3] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[7] == pytest.approx(1 / 61)
    assert fused[5] == pytest.approx(1 / 62)
    assert fused[9] == pytest.approx(1 / 63)
    assert [row for row, _ in top(fused, 4)] == [3, 7, 5, 9]


def test_rrf_weights() -> None:
    fused = reciprocal_rank_fusion([[1], [2]], k=0, weights=[2.0, 1.0])
    assert fused == {1: 2.0, 2: 1.0}


def test_min_max() -> None:
    assert min_max({1: 2.0, 2: 4.0, 3: 3.0}) == {1: 0.0, 2: 1.0, 3: 0.5}
    assert min_max({1: 5.0, 2: 5.0}) == {1: 1.0, 2: 1.0}
    assert min_max({}) == {}


def test_weighted_fusion_hand_computed() -> None:
    dense = {1: 0.9, 2: 0.5, 3: 0.7}  # -> 1.0, 0.0, 0.5
    lexical = {2: 10.0, 4: 2.0}  # -> 1.0, 0.0
    fused = weighted_fusion(dense, lexical, dense_weight=0.25)
    assert fused[1] == pytest.approx(0.25)
    assert fused[2] == pytest.approx(0.75)
    assert fused[3] == pytest.approx(0.125)
    assert fused[4] == pytest.approx(0.0)


def test_top_breaks_ties_by_row() -> None:
    assert top({5: 1.0, 2: 1.0, 9: 2.0}, 3) == [(9, 2.0), (2, 1.0), (5, 1.0)]
