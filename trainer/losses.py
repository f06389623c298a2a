"""The losses of the loop: masked statistics, token log-probs, reward-model, DPO, KTO and PPO objectives.

Pure functions: tensors in, tensors out, no I/O and no state. Masks are 0/1 or bool tensors of the
same shape as the values they select; a masked-out value never changes a result (it is replaced,
not multiplied, so even inf or nan there stays out). A mean over an empty mask is 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_WHITEN_EPS = 1e-8


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ_i m_i·x_i / Σ_i m_i over `dim` (all elements when None); 0 where the mask is empty."""
    keep = mask.bool()
    total = torch.where(keep, x, torch.zeros_like(x))
    count = keep.to(x.dtype)
    if dim is None:
        return total.sum() / count.sum().clamp_min(1.0)
    return total.sum(dim) / count.sum(dim).clamp_min(1.0)


def masked_var(x: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the selected entries: Σ m·(x - μ)² / n, times n / (n - 1) when unbiased.

    μ is `masked_mean(x, mask)` and n = Σ m. With fewer than two selected entries the unbiased
    correction is undefined and the result is 0, so whitening a one-token batch does not crash.
    """
    keep = mask.bool()
    x = torch.where(keep, x, torch.zeros_like(x))
    mean = masked_mean(x, keep)
    variance = masked_mean((x - mean) ** 2, keep)
    if unbiased:
        n = keep.sum()
        if n < 2:
            return torch.zeros_like(variance)
        variance = variance * n / (n - 1)
    return variance


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - μ) / sqrt(σ² + 1e-8) over the selected entries (μ added back when not shift_mean).

    μ and σ² are `masked_mean` and the unbiased `masked_var`; entries outside the mask come out 0.
    """
    keep = mask.bool()
    x = torch.where(keep, x, torch.zeros_like(x))
    mean, variance = masked_mean(x, keep), masked_var(x, keep)
    whitened = (x - mean) * torch.rsqrt(variance + _WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(keep, whitened, torch.zeros_like(whitened))


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p(label) = z[label] - logsumexp(z), per token.

    logits (batch, seq, vocab) are already aligned with labels (batch, seq): logits[:, t] predicts
    labels[:, t]. Computed one row at a time, in float32 at least, so no (batch, seq, vocab)
    log-softmax copy is made. Returns (batch, seq).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    rows = []
    for row_logits, row_labels in zip(logits, labels, strict=True):  # (seq, vocab), (seq,)
        row_logits = row_logits.to(dtype)
        picked = row_logits.gather(-1, row_labels.unsqueeze(-1)).squeeze(-1)  # (seq,)
        rows.append(picked - torch.logsumexp(row_logits, dim=-1))  # (seq,)
    return torch.stack(rows)  # (batch, seq)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """H = -Σ_v p_v log p_v = logsumexp(z) - Σ_v softmax(z)_v·z_v, per token.

    logits (batch, seq, vocab), one row at a time in float32 at least. Returns (batch, seq).
    """
    dtype = torch.promote_types(logits.dtype, torch.float32)
    rows = []
    for row_logits in logits:  # (seq, vocab)
        row_logits = row_logits.to(dtype)
        probs = torch.softmax(row_logits, dim=-1)
        rows.append(torch.logsumexp(row_logits, dim=-1) - (probs * row_logits).sum(-1))  # (seq,)
    return torch.stack(rows)  # (batch, seq)


def _weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Σ w·v / Σ w (plain mean without weights); 0 when the weights sum to 0."""
    if weights is None:
        return values.mean()
    weights = weights.to(values.dtype)
    return (weights * values).sum() / weights.sum().clamp_min(torch.finfo(values.dtype).tiny)


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pairwise reward-model loss: mean of -log σ(r_chosen - r_rejected - margin).

    chosen, rejected, margin, weights: (batch,). With weights, the mean is Σ w·loss / Σ w.
    """
    diff = chosen - rejected  # (batch,)
    if margin is not None:
        diff = diff - margin
    return _weighted_mean(-F.logsigmoid(diff), weights)


def thumbs_bce_loss(
    scores: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Thumbs as binary labels: mean of -[y·log σ(s) + (1 - y)·log(1 - σ(s))].

    scores are reward logits (batch,), labels 1 (up) or 0 (down) (batch,); weighted mean with weights.
    """
    losses = F.binary_cross_entropy_with_logits(scores, labels.to(scores.dtype), reduction="none")
    return _weighted_mean(losses, weights)


def dpo_loss(
    policy_chosen_logps: torch.Tensor,
    policy_rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sigmoid DPO (Rafailov et al. 2023) with conservative label smoothing ε.

    h = β·[(log π(y_w) - log π_ref(y_w)) - (log π(y_l) - log π_ref(y_l))]
    loss = mean of -(1 - ε)·log σ(h) - ε·log σ(-h)   (weighted mean with weights)
    All inputs are summed sequence log-probs (batch,). Returns (loss, chosen_rewards,
    rejected_rewards), the rewards β·(log π - log π_ref) (batch,) detached, for logging.
    """
    chosen_logratios = policy_chosen_logps - ref_chosen_logps  # (batch,)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps  # (batch,)
    h = beta * (chosen_logratios - rejected_logratios)  # (batch,)
    losses = -(1.0 - label_smoothing) * F.logsigmoid(h) - label_smoothing * F.logsigmoid(-h)
    chosen_rewards = (beta * chosen_logratios).detach()
    rejected_rewards = (beta * rejected_logratios).detach()
    return _weighted_mean(losses, weights), chosen_rewards, rejected_rewards


def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate, masked mean over response tokens:

    ρ = exp(log π - log π_old);  loss = mean_m max(-A·ρ, -A·clip(ρ, 1 - c, 1 + c))
    clip_fraction = share of masked tokens where the clipped term is the larger (active) one.
    approx_kl = mean_m ½(log π - log π_old)², the k2 estimator of KL(π_old ‖ π) (Schulman 2020).
    All inputs (batch, seq). Returns (loss, clip_fraction, approx_kl); the last two are detached.
    """
    keep = mask.bool()
    log_ratio = torch.where(keep, logprobs - old_logprobs, torch.zeros_like(logprobs))  # (batch, seq)
    advantages = torch.where(keep, advantages, torch.zeros_like(advantages))
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio  # (batch, seq)
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)  # (batch, seq)
    loss = masked_mean(torch.maximum(unclipped, clipped), keep)
    clip_fraction = masked_mean((clipped > unclipped).to(logprobs.dtype), keep).detach()
    approx_kl = masked_mean(0.5 * log_ratio**2, keep).detach()
    return loss, clip_fraction, approx_kl


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_value: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss, masked mean over response tokens:

    v_c = clip(v, v_old - c, v_old + c);  loss = ½·mean_m max((v - R)², (v_c - R)²)
    clip_fraction = share of masked tokens where the clipped term is the larger one (detached).
    All inputs (batch, seq). Returns (loss, clip_fraction).
    """
    keep = mask.bool()
    values, old_values, returns = (
        torch.where(keep, t, torch.zeros_like(t)) for t in (values, old_values, returns)
    )
    clipped_values = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    unclipped_loss = (values - returns) ** 2  # (batch, seq)
    clipped_loss = (clipped_values - returns) ** 2  # (batch, seq)
    loss = 0.5 * masked_mean(torch.maximum(unclipped_loss, clipped_loss), keep)
    clip_fraction = masked_mean((clipped_loss > unclipped_loss).to(values.dtype), keep).detach()
    return loss, clip_fraction


def kto_reference_point(policy_logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z₀: an estimate of KL(π ‖ π_ref) from answers paired with prompts they were
    not written for (each prompt with another example's answer), max(0, mean(log π - log π_ref)),
    detached (no gradient flows through it). Inputs (batch,) summed log-probs; returns a scalar."""
    return (policy_logps - ref_logps).mean().clamp_min(0.0).detach()


def kto_loss(
    policy_logps: torch.Tensor,
    ref_logps: torch.Tensor,
    desirable: torch.Tensor,
    reference_point: torch.Tensor | float,
    beta: float,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kahneman–Tversky optimisation (Ethayarajh et al. 2024) on unpaired thumbs:

    r = log π(y|x) - log π_ref(y|x);   z₀ = the reference point (`kto_reference_point`)
    v = λ_D·σ(β·(r - z₀)) for a desirable (thumbs-up) answer,  λ_U·σ(β·(z₀ - r)) for an undesirable one
    loss = mean of λ_y - v                                        (weighted mean with weights)
    policy_logps, ref_logps (batch,) summed answer log-probs; desirable (batch,) bool or 0/1.
    Returns (loss, rewards β·r (batch,) detached, for logging).
    """
    good = desirable.bool()
    logratios = policy_logps - ref_logps  # (batch,)
    z0 = torch.as_tensor(reference_point, dtype=logratios.dtype, device=logratios.device)
    value = torch.where(
        good,
        desirable_weight * torch.sigmoid(beta * (logratios - z0)),
        undesirable_weight * torch.sigmoid(beta * (z0 - logratios)),
    )  # (batch,)
    lam = torch.where(
        good,
        torch.full_like(logratios, desirable_weight),
        torch.full_like(logratios, undesirable_weight),
    )
    return _weighted_mean(lam - value, weights), (beta * logratios).detach()
