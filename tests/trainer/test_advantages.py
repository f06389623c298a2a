"""trainer.advantages against hand-worked numbers and a naive GAE written as the sum it stands for."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.advantages import (
    gae,
    kl_penalized_rewards,
    kl_penalty,
    rloo_advantages,
    token_advantages,
    whiten_advantages,
)
from trainer.losses import masked_whiten


def t(data: object) -> torch.Tensor:
    return torch.tensor(data, dtype=torch.float64)


def close(actual: torch.Tensor, expected: object, atol: float = 1e-9) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# --- KL ------------------------------------------------------------------------------------------

LOGPROBS, REF = t([[-1.0, -2.0]]), t([[-2.0, -1.0]])  # d = log π - log π_ref = (1, -1)


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("k1", [[1.0, -1.0]]),  # d
        ("abs", [[1.0, 1.0]]),  # |d|
        ("mse", [[0.5, 0.5]]),  # ½ d²
        # ref - logp = (-1, 1): e^-1 - (-1) - 1 = e^-1;  e^1 - 1 - 1 = e - 2
        ("k3", [[math.exp(-1.0), math.e - 2.0]]),
    ],
)
def test_kl_penalty_by_hand(kind: str, expected: list[list[float]]) -> None:
    close(kl_penalty(LOGPROBS, REF, kind), expected)  # type: ignore[arg-type]


def test_k3_is_nonnegative_and_zero_at_equality() -> None:
    torch.manual_seed(0)
    logprobs, ref = torch.randn(4, 7), torch.randn(4, 7)
    assert (kl_penalty(logprobs, ref, "k3") >= 0).all()
    close(kl_penalty(ref, ref, "k3"), torch.zeros(4, 7))


def test_unknown_kl_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'k2'"):
        kl_penalty(LOGPROBS, REF, "k2")  # type: ignore[arg-type]


def test_kl_penalized_rewards_by_hand() -> None:
    ref = t([[-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0], [-1.0, -1.0, -1.0]])
    diff = t([[0.1, 0.2, 0.3], [0.5, 0.5, 9.0], [4.0, 4.0, 4.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])  # full row, shorter row, empty row
    scores = t([1.0, 2.0, 5.0])
    rewards, kl = kl_penalized_rewards(scores, ref + diff, ref, mask, kl_coef=0.1)
    close(kl, [[0.1, 0.2, 0.3], [0.5, 0.5, 0.0], [0.0, 0.0, 0.0]], atol=1e-12)
    # -0.1·kl on every response token, the score at the last one, nothing for the empty row
    #   row 0: -0.01, -0.02, -0.03 + 1;  row 1: -0.05, -0.05 + 2, 0
    close(rewards, [[-0.01, -0.02, 0.97], [-0.05, 1.95, 0.0], [0.0, 0.0, 0.0]], atol=1e-12)


def test_kl_penalized_rewards_pass_the_estimator_through() -> None:
    mask = torch.ones(1, 2)
    rewards, kl = kl_penalized_rewards(t([0.0]), LOGPROBS, REF, mask, kl_coef=2.0, kind="abs")
    close(kl, [[1.0, 1.0]])  # |d|
    close(rewards, [[-2.0, -2.0]])  # -2·|d|, score 0


# --- GAE -----------------------------------------------------------------------------------------


def test_gae_by_hand() -> None:
    rewards = t([[1.0, 0.0, 2.0], [2.0, 3.0, 7.0], [5.0, 5.0, 5.0]])
    values = t([[0.5, 1.0, 1.5], [2.0, 1.0, 9.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0], [0, 0, 0]])
    advantages, returns = gae(rewards, values, mask, gamma=0.5, lam=0.5)
    # row 0, γ = λ = 0.5, γλ = 0.25:
    #   t=2: δ = 2 + 0.5·0 - 1.5 = 0.5                      A = 0.5
    #   t=1: δ = 0 + 0.5·1.5 - 1.0 = -0.25                  A = -0.25 + 0.25·0.5 = -0.125
    #   t=0: δ = 1 + 0.5·1.0 - 0.5 = 1.0                    A = 1.0 + 0.25·(-0.125) = 0.96875
    # row 1, t=2 is padding (its reward 7 and value 9 must not leak in):
    #   t=1: δ = 3 + 0 - 1 = 2 (terminal)                   A = 2
    #   t=0: δ = 2 + 0.5·1 - 2 = 0.5                        A = 0.5 + 0.25·2 = 1.0
    # row 2 is empty: zeros
    close(advantages, [[0.96875, -0.125, 0.5], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    # returns = A + V inside the mask
    close(returns, [[1.46875, 0.875, 2.0], [3.0, 3.0, 0.0], [0.0, 0.0, 0.0]])


def naive_gae(
    rewards: torch.Tensor, values: torch.Tensor, lengths: list[int], gamma: float, lam: float
) -> torch.Tensor:
    """A_t = Σ_l (γλ)^l δ_{t+l} over the row's own steps, with V = 0 after its last one."""
    out = torch.zeros_like(rewards)
    for b, length in enumerate(lengths):
        r, v = rewards[b].tolist(), values[b].tolist()
        deltas = [r[i] + gamma * (v[i + 1] if i + 1 < length else 0.0) - v[i] for i in range(length)]
        for i in range(length):
            out[b, i] = sum((gamma * lam) ** (j - i) * deltas[j] for j in range(i, length))
    return out


@pytest.mark.parametrize(("gamma", "lam"), [(1.0, 0.95), (0.9, 0.8), (0.99, 1.0)])
def test_gae_matches_the_naive_sum_on_ragged_rows(gamma: float, lam: float) -> None:
    torch.manual_seed(3)
    batch, seq = 6, 9
    lengths = [9, 0, 1, 5, 3, 8]
    mask = (torch.arange(seq) < torch.tensor(lengths).unsqueeze(-1)).long()
    rewards, values = (
        torch.randn(batch, seq, dtype=torch.float64),
        torch.randn(batch, seq, dtype=torch.float64),
    )
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    expected = naive_gae(rewards, values, lengths, gamma, lam)
    close(advantages, expected)
    close(returns, torch.where(mask.bool(), expected + values, 0.0))


def test_gae_ignores_padding_and_returns_targets_without_gradient() -> None:
    mask = torch.tensor([[1, 1, 0, 0]])
    rewards, values = t([[1.0, 2.0, 0.0, 0.0]]), t([[0.5, 0.25, 0.0, 0.0]]).requires_grad_()
    base = gae(rewards, values, mask, 0.9, 0.9)
    noisy = gae(t([[1.0, 2.0, 1e6, float("nan")]]), t([[0.5, 0.25, -1e6, float("inf")]]), mask, 0.9, 0.9)
    assert torch.equal(base[0], noisy[0]) and torch.equal(base[1].detach(), noisy[1])
    assert not base[0].requires_grad and not base[1].requires_grad


def test_whiten_advantages_is_masked_whiten() -> None:
    assert whiten_advantages is masked_whiten


# --- group baseline (RLOO) --------------------------------------------------------------------------


def test_rloo_advantages_by_hand() -> None:
    # prompt 1: rewards (1, 2, 3, 6); the others' means are (11/3, 10/3, 3, 2)
    # A = (1 - 11/3, 2 - 10/3, 3 - 3, 6 - 2) = (-8/3, -4/3, 0, 4)
    # prompt 2: all 5: no signal, whatever the level
    scores = t([1.0, 2.0, 3.0, 6.0, 5.0, 5.0, 5.0, 5.0])
    close(rloo_advantages(scores, 4), [-8 / 3, -4 / 3, 0.0, 4.0, 0.0, 0.0, 0.0, 0.0])
    # k = 2: each answer against the other one
    close(rloo_advantages(t([0.5, -1.5]), 2), [2.0, -2.0])


def test_rloo_advantages_refuse_bad_groups() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        rloo_advantages(t([1.0, 2.0]), 1)
    with pytest.raises(ValueError, match="consecutive"):
        rloo_advantages(t([1.0, 2.0, 3.0]), 2)


def test_token_advantages_spread_a_row_over_its_response_tokens() -> None:
    mask = t([[0, 1, 1, 0], [1, 0, 0, 0]])
    close(token_advantages(t([2.0, -1.0]), mask), [[0.0, 2.0, 2.0, 0.0], [-1.0, 0.0, 0.0, 0.0]])
