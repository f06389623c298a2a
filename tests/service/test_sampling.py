from __future__ import annotations

import pytest
import torch

from service.generation.sampling import choose_token, top_p_filter


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    # probabilities 0.5, 0.3, 0.15, 0.05 (as logits: their logs)
    logits = torch.log(torch.tensor([0.15, 0.5, 0.05, 0.3]))
    kept = top_p_filter(logits, 0.7)  # 0.5 alone < 0.7, 0.5 + 0.3 >= 0.7 -> keep tokens 1 and 3
    assert torch.isfinite(kept).tolist() == [False, True, False, True]
    kept = top_p_filter(logits, 0.8)  # mass above token 0 is 0.8 -> dropped; exactly reaching p is enough
    assert torch.isfinite(kept).tolist() == [False, True, False, True]
    kept = top_p_filter(logits, 0.81)
    assert torch.isfinite(kept).tolist() == [True, True, False, True]
    assert torch.isfinite(top_p_filter(logits, 1.0)).all()
    assert torch.isfinite(top_p_filter(logits, 0.0)).tolist() == [False, True, False, False]


def test_choose_token_greedy_and_sampled() -> None:
    logits = torch.tensor([0.0, 3.0, 1.0])
    assert choose_token(logits, 0.0, 1.0) == 1
    gen = torch.Generator().manual_seed(0)
    counts = [0, 0, 0]
    for _ in range(2000):
        counts[choose_token(logits, 1.0, 1.0, gen)] += 1
    probs = torch.softmax(logits, 0).tolist()
    for c, p in zip(counts, probs, strict=True):
        assert c / 2000 == pytest.approx(p, abs=0.04)
    # top_p small enough keeps only the best token even when sampling
    assert {choose_token(logits, 1.0, 0.5, gen) for _ in range(50)} == {1}
