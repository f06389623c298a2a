"""From reward scores to PPO advantages: the group baseline (RLOO), per-token KL, shaped rewards, GAE.

Pure functions over (batch, seq) tensors of response tokens. Masks are right-padded response masks
(0/1 or bool); everything outside them comes out 0. Whitening is `trainer.losses.masked_whiten`.
"""

from __future__ import annotations

from typing import Literal

import torch

from trainer.losses import masked_whiten

KLKind = Literal["k1", "k3", "abs", "mse"]

# Advantages are whitened with the same masked statistics as everything else.
whiten_advantages = masked_whiten


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, kind: KLKind = "k1") -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from sampled tokens, d = log π - log π_ref:

    k1 = d;  k3 = exp(-d) - (-d) - 1 = exp(ref - logp) - (ref - logp) - 1 (≥ 0, unbiased);
    abs = |d|;  mse = ½·d². Same shape as the inputs, e.g. (batch, seq).
    """
    diff = logprobs - ref_logprobs
    if kind == "k1":
        return diff
    if kind == "k3":
        return torch.expm1(-diff) + diff
    if kind == "abs":
        return diff.abs()
    if kind == "mse":
        return 0.5 * diff**2
    raise ValueError(f"unknown KL estimator {kind!r}: use one of 'k1', 'k3', 'abs', 'mse'")


def kl_penalized_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    kind: KLKind = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """r_t = -β·KL_t on every response token, plus the sequence score at the last valid token.

    scores (batch,), logprobs / ref_logprobs / mask (batch, seq), β = kl_coef. A row with an empty
    mask gets no score. Returns (rewards, kl), both (batch, seq), 0 outside the mask.
    """
    keep = mask.bool()
    kl = torch.where(keep, kl_penalty(logprobs, ref_logprobs, kind), torch.zeros_like(logprobs))
    positions = torch.arange(keep.shape[-1], device=keep.device)  # (seq,)
    last = torch.where(keep, positions, -1).amax(dim=-1)  # (batch,), -1 for an empty row
    at_last = positions == last.unsqueeze(-1)  # (batch, seq), all False for an empty row
    rewards = -kl_coef * kl + torch.where(at_last, scores.unsqueeze(-1).to(kl.dtype), 0.0)
    return rewards, kl


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2016), backwards over time:

    δ_t = r_t + γ·V_{t+1}·m_{t+1} - V_t;   A_t = (δ_t + γλ·A_{t+1})·m_t;   R_t = A_t + V_t
    with V_T = A_T = 0 past the end, so the step after a row's last valid token is terminal.
    rewards, values, mask (batch, seq); inputs are detached (advantages and returns are targets).
    Returns (advantages, returns), both (batch, seq), 0 outside the mask.
    """
    keep = mask.bool()
    rewards = torch.where(keep, rewards.detach(), torch.zeros_like(rewards))
    values = torch.where(keep, values.detach(), torch.zeros_like(values))  # V·m, so V_{t+1}·m_{t+1}
    seq = rewards.shape[-1]
    next_value = torch.zeros_like(values[:, 0])  # (batch,)
    next_advantage = torch.zeros_like(values[:, 0])  # (batch,)
    reversed_advantages = []
    for t in reversed(range(seq)):
        delta = rewards[:, t] + gamma * next_value - values[:, t]  # (batch,)
        advantage = torch.where(keep[:, t], delta + gamma * lam * next_advantage, 0.0)  # (batch,)
        reversed_advantages.append(advantage)
        next_value, next_advantage = values[:, t], advantage
    advantages = torch.stack(reversed_advantages[::-1], dim=1)  # (batch, seq)
    returns = torch.where(keep, advantages + values, torch.zeros_like(values))
    return advantages, returns


def rloo_advantages(scores: torch.Tensor, group_size: int) -> torch.Tensor:
    """Leave-one-out group baseline (RLOO, Ahmadian et al. 2024): each prompt was answered
    `group_size` = k times, its k answers consecutive in `scores` (n_prompts·k,). The advantage of an
    answer is its score minus the mean score of the prompt's other k - 1 answers:

    A_i = r_i - (Σ_j r_j - r_i) / (k - 1)  =  k / (k - 1) · (r_i - mean_j r_j)

    so a prompt whose answers all score alike gives no signal, whatever its level. Returns (n_prompts·k,).
    """
    if group_size < 2:
        raise ValueError(f"the group baseline needs at least 2 samples per prompt, got {group_size}")
    if scores.ndim != 1 or scores.shape[0] % group_size:
        raise ValueError(
            f"scores must be (n_prompts * {group_size},) with each prompt's answers consecutive, "
            f"got shape {tuple(scores.shape)}"
        )
    groups = scores.reshape(-1, group_size)  # (n_prompts, k)
    others = (groups.sum(dim=1, keepdim=True) - groups) / (group_size - 1)  # (n_prompts, k)
    return (groups - others).reshape(-1)


def token_advantages(advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A sequence-level advantage (batch,) on every response token of its row (batch, seq), 0 elsewhere."""
    spread = advantages.unsqueeze(-1).expand(mask.shape)  # (batch, seq)
    return torch.where(mask.bool(), spread, torch.zeros_like(spread))
