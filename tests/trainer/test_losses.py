"""trainer.losses against numbers worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import (
    bradley_terry_loss,
    dpo_loss,
    entropy_from_logits,
    kto_loss,
    kto_reference_point,
    masked_mean,
    masked_var,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    thumbs_bce_loss,
    token_logprobs,
)

LN2 = math.log(2.0)


def t(data: object) -> torch.Tensor:
    return torch.tensor(data, dtype=torch.float64)


def close(actual: torch.Tensor, expected: object, atol: float = 1e-9) -> None:
    torch.testing.assert_close(actual, torch.as_tensor(expected, dtype=actual.dtype), atol=atol, rtol=0)


# Selected entries 1, 3, 5 (row 0: 1, 3; row 1: 5); the rest is noise that must not count.
X = t([[1.0, 3.0, 99.0], [5.0, -7.0, 42.0]])
MASK = torch.tensor([[1, 1, 0], [1, 0, 0]])
NOISE = t([[0.0, 0.0, float("inf")], [0.0, float("nan"), -1e6]])  # put only where MASK is 0


# --- masked statistics -----------------------------------------------------------------------


def test_masked_mean_by_hand() -> None:
    close(masked_mean(X, MASK), 3.0)  # (1 + 3 + 5) / 3
    close(masked_mean(X, MASK, dim=1), [2.0, 5.0])  # (1 + 3) / 2, 5 / 1
    close(masked_mean(X, MASK.bool(), dim=0), [3.0, 3.0, 0.0])  # (1 + 5) / 2, 3 / 1, empty -> 0


def test_masked_mean_of_empty_mask_is_zero() -> None:
    close(masked_mean(X, torch.zeros_like(MASK)), 0.0)


def test_masked_var_by_hand() -> None:
    # mean 3, squared deviations 4, 0, 4 -> sum 8; biased 8 / 3, unbiased 8 / 2 = 4
    close(masked_var(X, MASK), 4.0)
    close(masked_var(X, MASK, unbiased=False), 8.0 / 3.0)


def test_masked_var_of_one_entry_is_zero_not_nan() -> None:
    close(masked_var(X, torch.tensor([[1, 0, 0], [0, 0, 0]])), 0.0)


def test_masked_whiten_by_hand() -> None:
    # mean 3, unbiased std 2: (1, 3, 5) -> (-1, 0, 1); outside the mask -> 0
    close(masked_whiten(X, MASK), [[-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]], atol=1e-6)
    # without shifting the mean it stays at 3: (-1, 0, 1) + 3
    close(masked_whiten(X, MASK, shift_mean=False), [[2.0, 3.0, 0.0], [4.0, 0.0, 0.0]], atol=1e-6)


def test_masked_statistics_ignore_masked_out_values() -> None:
    noisy = torch.where(MASK.bool(), X, NOISE)
    assert torch.equal(masked_mean(noisy, MASK), masked_mean(X, MASK))
    assert torch.equal(masked_mean(noisy, MASK, dim=1), masked_mean(X, MASK, dim=1))
    assert torch.equal(masked_var(noisy, MASK), masked_var(X, MASK))
    assert torch.equal(masked_whiten(noisy, MASK), masked_whiten(X, MASK))


def test_masked_mean_gradient_is_finite_and_zero_outside_the_mask() -> None:
    noisy = torch.where(MASK.bool(), X, NOISE).requires_grad_()
    masked_whiten(noisy, MASK).pow(2).sum().backward()
    assert noisy.grad is not None and torch.isfinite(noisy.grad).all()
    assert (noisy.grad[~MASK.bool()] == 0).all()


# --- token log-probs and entropy -------------------------------------------------------------


def test_token_logprobs_by_hand() -> None:
    ln2, ln3 = math.log(2.0), math.log(3.0)
    logits = t([[[0.0, 0.0, ln2], [ln3, 0.0, 0.0]]])  # (batch=1, seq=2, vocab=3)
    labels = torch.tensor([[2, 0]])
    # token 0: exp-sum 1 + 1 + 2 = 4, log p(2) = ln 2 - ln 4 = -ln 2
    # token 1: exp-sum 3 + 1 + 1 = 5, log p(0) = ln 3 - ln 5
    close(token_logprobs(logits, labels), [[-ln2, ln3 - math.log(5.0)]])


def test_token_logprobs_matches_log_softmax_and_keeps_gradients() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 11, requires_grad=True)
    labels = torch.randint(0, 11, (3, 5))
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    got = token_logprobs(logits, labels)
    assert got.shape == (3, 5)
    torch.testing.assert_close(got, expected)
    got.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_token_logprobs_of_bf16_logits_come_back_in_float32() -> None:
    logits = t([[[0.0, 0.0, LN2]]]).to(torch.bfloat16)
    got = token_logprobs(logits, torch.tensor([[2]]))
    assert got.dtype == torch.float32
    close(got, [[-LN2]], atol=1e-2)


def test_entropy_by_hand() -> None:
    # uniform over 4 -> ln 4; probs (1/4, 1/4, 1/2) -> ½ ln 4 + ½ ln 2 = 1.5 ln 2; a peaked one -> ~0
    logits = t([[[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, LN2, -1e9], [100.0, 0.0, 0.0, 0.0]]])
    got = entropy_from_logits(logits)  # (batch=1, seq=3)
    assert got.shape == (1, 3)
    close(got, [[math.log(4.0), 1.5 * LN2, 0.0]], atol=1e-6)


# --- reward-model losses ---------------------------------------------------------------------


def softplus(x: float) -> float:  # -log σ(x) = log(1 + e^-x)
    return math.log1p(math.exp(-x))


def test_bradley_terry_by_hand() -> None:
    chosen, rejected = t([2.0, 0.0]), t([0.0, 0.0])
    # -log σ(2) = ln(1 + e^-2), -log σ(0) = ln 2
    close(bradley_terry_loss(chosen, rejected), (softplus(2.0) + LN2) / 2)
    # a margin of 1 on the first pair: -log σ(2 - 0 - 1)
    close(bradley_terry_loss(chosen, rejected, margin=t([1.0, 0.0])), (softplus(1.0) + LN2) / 2)
    # weights 3 and 1: (3·ln(1 + e^-2) + ln 2) / 4
    close(bradley_terry_loss(chosen, rejected, weights=t([3.0, 1.0])), (3 * softplus(2.0) + LN2) / 4)


def test_bradley_terry_gradient_pushes_chosen_up_and_rejected_down() -> None:
    chosen = t([0.0, 1.0, -2.0]).requires_grad_()
    rejected = t([0.0, -1.0, 3.0]).requires_grad_()
    bradley_terry_loss(chosen, rejected).backward()
    assert chosen.grad is not None and rejected.grad is not None
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()
    # d/d chosen_0 = -(1 - σ(0)) / 3 = -1/6
    close(chosen.grad[0], -1.0 / 6.0)


def test_thumbs_bce_by_hand() -> None:
    scores, labels = t([0.0, math.log(3.0)]), torch.tensor([1, 0])
    # up at score 0: -log σ(0) = ln 2; down at score ln 3: σ = 3/4, -log(1 - 3/4) = ln 4 = 2 ln 2
    close(thumbs_bce_loss(scores, labels), (LN2 + 2 * LN2) / 2)
    # weights 1 and 3: (ln 2 + 3·2 ln 2) / 4 = 7/4 ln 2
    close(thumbs_bce_loss(scores, labels.bool(), weights=t([1.0, 3.0])), 1.75 * LN2)


def test_zero_total_weight_gives_zero_not_nan() -> None:
    close(thumbs_bce_loss(t([1.0]), torch.tensor([1]), weights=t([0.0])), 0.0)


# --- DPO -------------------------------------------------------------------------------------


def test_dpo_by_hand() -> None:
    # chosen log-ratio -1 - (-2) = 1, rejected -3 - (-2) = -1; h = 0.5·(1 - (-1)) = 1
    args = (t([-1.0]), t([-3.0]), t([-2.0]), t([-2.0]))
    loss, chosen_rewards, rejected_rewards = dpo_loss(*args, beta=0.5)
    close(loss, softplus(1.0))  # -log σ(1)
    close(chosen_rewards, [0.5])  # 0.5 · 1
    close(rejected_rewards, [-0.5])  # 0.5 · -1
    # smoothing 0.1: 0.9·(-log σ(1)) + 0.1·(-log σ(-1))
    smoothed, _, _ = dpo_loss(*args, beta=0.5, label_smoothing=0.1)
    close(smoothed, 0.9 * softplus(1.0) + 0.1 * softplus(-1.0))


def test_dpo_weights_and_detached_rewards() -> None:
    policy_chosen = t([-1.0, -2.0]).requires_grad_()
    # h = 1·((-1 + 2) - 0) = 1 and 1·((-2 + 2) - 0) = 0 -> weights 1, 3: (ln(1 + e^-1) + 3 ln 2) / 4
    loss, chosen_rewards, _ = dpo_loss(
        policy_chosen, t([-2.0, -2.0]), t([-2.0, -2.0]), t([-2.0, -2.0]), 1.0, weights=t([1, 3])
    )
    close(loss, (softplus(1.0) + 3 * LN2) / 4)
    assert loss.requires_grad and not chosen_rewards.requires_grad


def test_dpo_loss_falls_when_the_policy_prefers_the_chosen_answer_more() -> None:
    def loss_at(policy_chosen: float) -> float:
        return dpo_loss(t([policy_chosen]), t([-5.0]), t([-4.0]), t([-5.0]), beta=0.1)[0].item()

    assert loss_at(-3.0) < loss_at(-4.0) < loss_at(-5.0)
    policy_chosen = t([-4.0]).requires_grad_()
    dpo_loss(policy_chosen, t([-5.0]), t([-4.0]), t([-5.0]), beta=0.1)[0].backward()
    assert policy_chosen.grad is not None and policy_chosen.grad.item() < 0


# --- PPO -------------------------------------------------------------------------------------


def test_ppo_policy_loss_by_hand() -> None:
    ratios = t([[1.1, 1.5, 1.0], [0.5, 1.5, 1.0]])
    advantages = t([[2.0, 1.0, 0.0], [-1.0, -1.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    old = t([[-1.0, -2.0, -3.0], [-0.5, -1.5, -2.5]])
    # per token max(-A·ρ, -A·clip(ρ, 0.8, 1.2)):
    #   ρ 1.1, A  2: max(-2.2, -2.2) = -2.2 (inside the range)
    #   ρ 1.5, A  1: max(-1.5, -1.2) = -1.2 (clipped branch)
    #   ρ 0.5, A -1: max( 0.5,  0.8) =  0.8 (clipped branch)
    #   ρ 1.5, A -1: max( 1.5,  1.2) =  1.5 (unclipped: the clip would make it look better)
    loss, clip_fraction, approx_kl = ppo_policy_loss(old + ratios.log(), old, advantages, mask, 0.2)
    close(loss, (-2.2 - 1.2 + 0.8 + 1.5) / 4)
    close(clip_fraction, 2 / 4)
    logs = [math.log(1.1), math.log(1.5), math.log(0.5), math.log(1.5)]
    close(approx_kl, sum(0.5 * x**2 for x in logs) / 4)  # ½ (log ρ)², masked mean


def test_ppo_policy_loss_inside_the_range_is_the_plain_surrogate() -> None:
    torch.manual_seed(1)
    old = torch.randn(2, 3, dtype=torch.float64)
    logprobs = (old + torch.empty_like(old).uniform_(-0.09, 0.09)).requires_grad_()  # ρ within 0.91..1.1
    advantages, mask = torch.randn(2, 3, dtype=torch.float64), torch.ones(2, 3)
    loss, clip_fraction, _ = ppo_policy_loss(logprobs, old, advantages, mask, clip_range=0.2)
    ratio = torch.exp(logprobs - old)
    close(loss, (-advantages * ratio).mean().detach())
    close(clip_fraction, 0.0)
    loss.backward()  # d/d log π of mean(-A·ρ) = -A·ρ / n
    assert logprobs.grad is not None
    close(logprobs.grad, (-advantages * ratio / 6).detach())


def test_ppo_policy_loss_outside_the_range_takes_the_clipped_branch_without_gradient() -> None:
    logprobs = t([math.log(1.5)]).requires_grad_()
    loss, clip_fraction, _ = ppo_policy_loss(logprobs, t([0.0]), t([1.0]), torch.ones(1), clip_range=0.2)
    close(loss, -1.2)  # -A·(1 + 0.2), not -1.5
    close(clip_fraction, 1.0)
    loss.backward()
    assert logprobs.grad is not None and logprobs.grad.item() == 0.0


def test_ppo_policy_loss_ignores_masked_out_tokens() -> None:
    old, adv, mask = t([-1.0, -1.0]), t([1.0, 1.0]), torch.tensor([1, 0])
    base = ppo_policy_loss(t([-0.9, -1.0]), old, adv, mask, 0.2)
    for junk in (50.0, float("inf"), float("nan")):
        logprobs = t([-0.9, junk]).requires_grad_()
        got = ppo_policy_loss(logprobs, old, t([1.0, junk]), mask, 0.2)
        for a, b in zip(got, base, strict=True):
            assert torch.equal(a.detach(), b)
        got[0].backward()
        assert logprobs.grad is not None and torch.isfinite(logprobs.grad).all()


def test_ppo_value_loss_by_hand() -> None:
    values = t([[1.0, 2.0, 7.0], [2.0, 0.0, 7.0]])
    old_values = t([[0.8, 0.5, 0.0], [0.5, 1.0, 0.0]])
    returns = t([[2.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0]])
    # c = 0.5, v_c = clip(v, v_old ± 0.5), per token max((v - R)², (v_c - R)²):
    #   v 1, old 0.8, R 2: v_c 1.0 -> max(1, 1)     = 1
    #   v 2, old 0.5, R 0: v_c 1.0 -> max(4, 1)     = 4    (unclipped larger)
    #   v 2, old 0.5, R 3: v_c 1.0 -> max(1, 4)     = 4    (clipped larger)
    #   v 0, old 1.0, R 0: v_c 0.5 -> max(0, 0.25)  = 0.25 (clipped larger)
    loss, clip_fraction = ppo_value_loss(values, old_values, returns, mask, clip_range_value=0.5)
    close(loss, 0.5 * (1 + 4 + 4 + 0.25) / 4)
    close(clip_fraction, 2 / 4)


def test_ppo_value_loss_clipping_stops_the_gradient() -> None:
    # v 2, old 0.5, R 3: the clipped term (1 - 3)² wins and does not depend on v
    values = t([2.0]).requires_grad_()
    loss, _ = ppo_value_loss(values, t([0.5]), t([3.0]), torch.ones(1), clip_range_value=0.5)
    loss.backward()
    assert values.grad is not None and values.grad.item() == 0.0
    # with a wide clip range it is plain ½(v - R)²: gradient v - R = -1
    values = t([2.0]).requires_grad_()
    loss, clip_fraction = ppo_value_loss(values, t([0.5]), t([3.0]), torch.ones(1), clip_range_value=10.0)
    close(loss, 0.5)
    close(clip_fraction, 0.0)
    loss.backward()
    assert values.grad is not None
    close(values.grad, [-1.0])


def test_ppo_value_loss_ignores_masked_out_tokens() -> None:
    mask = torch.tensor([1, 0])
    base = ppo_value_loss(t([1.0, 0.0]), t([1.0, 0.0]), t([2.0, 0.0]), mask, 0.5)
    values = t([1.0, float("inf")]).requires_grad_()
    got = ppo_value_loss(values, t([1.0, float("nan")]), t([2.0, -1e9]), mask, 0.5)
    assert torch.equal(got[0].detach(), base[0]) and torch.equal(got[1], base[1])
    got[0].backward()
    assert values.grad is not None and torch.isfinite(values.grad).all()


# --- KTO ---------------------------------------------------------------------------------------------


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_kto_loss_by_hand() -> None:
    # r = log π - log π_ref = (1.0, -0.5); labels (up, down); z₀ = 0.5; β = 1
    # up:   λ_D - λ_D·σ(r - z₀) = 1 - σ(0.5) = 0.3775406688
    # down: λ_U - λ_U·σ(z₀ - r) = 1 - σ(1.0) = 0.2689414214;  mean = 0.3232410451
    policy, ref = t([-2.0, -3.5]), t([-3.0, -3.0])
    labels = torch.tensor([True, False])
    loss, rewards = kto_loss(policy, ref, labels, 0.5, beta=1.0)
    assert float(loss) == pytest.approx(0.3232410451, abs=1e-9)
    assert rewards.tolist() == pytest.approx([1.0, -0.5])
    # β = 0.1 and λ_D = 2, λ_U = 1: (2 - 2·σ(0.05) + 1 - σ(0.1)) / 2
    loss, _ = kto_loss(policy, ref, labels, 0.5, beta=0.1, desirable_weight=2.0)
    expected = (2.0 - 2.0 * sigmoid(0.05) + 1.0 - sigmoid(0.1)) / 2
    assert float(loss) == pytest.approx(expected, abs=1e-7)
    # weights (3, 1): (3·0.3775406688 + 0.2689414214) / 4
    loss, _ = kto_loss(policy, ref, labels, 0.5, beta=1.0, weights=t([3.0, 1.0]))
    assert float(loss) == pytest.approx((3 * 0.3775406688 + 0.2689414214) / 4, abs=1e-9)


def test_kto_reference_point_is_a_clamped_detached_mean() -> None:
    policy = torch.tensor([-1.0, -2.0], requires_grad=True)
    # mean of (−1 − (−2), −2 − (−1.5)) = mean(1, −0.5) = 0.25
    z0 = kto_reference_point(policy, torch.tensor([-2.0, -1.5]))
    assert float(z0) == pytest.approx(0.25) and not z0.requires_grad
    assert float(kto_reference_point(torch.tensor([-3.0]), torch.tensor([-1.0]))) == 0.0  # clamped at 0


def test_kto_pushes_a_desirable_answer_up_and_an_undesirable_one_down() -> None:
    policy = torch.tensor([-2.0, -2.0], requires_grad=True)
    loss, _ = kto_loss(policy, torch.tensor([-2.0, -2.0]), torch.tensor([1, 0]), 0.0, beta=0.1)
    loss.backward()
    assert policy.grad is not None
    assert policy.grad[0] < 0 < policy.grad[1]  # descent raises log π(up) and lowers log π(down)
