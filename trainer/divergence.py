"""KL(policy ‖ reference) per response, measured on fresh samples of the policy.

The budget check for an algorithm that does not sample while it trains (DPO): before publishing, the
trained policy answers a seeded handful of prompts at temperature 1, and the log-probability ratio of
each answer under the policy and under the reference (the champion: `trainer.models.reference_mode`) is
summed over the answer's tokens (the k1 estimator), then averaged over the answers. PPO reports the same
figure from its own final samples (`trainer.ppo.PPOTrainer.measure_kl`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainer.models import reference_mode
from trainer.sequences import batch, response_logprobs, sample_responses


def response_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(batch,) summed k1 KL estimate over each row's response tokens: Σ mask·(log p − log p_ref)."""
    return ((logprobs - ref_logprobs) * mask).sum(dim=1)


@torch.no_grad()
def sampled_kl(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    samples: int,
    max_new_tokens: int,
    max_prompt_tokens: int,
    seed: int,
) -> float:
    """Mean KL(policy ‖ reference) per response over `samples` answers the policy samples to `prompts`
    (picked in a seeded order, reused when there are fewer). 0.0 without prompts."""
    from trainer.ppo import pick_prompts

    if not prompts or samples <= 0:
        return 0.0
    device = next(model.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        encoded, _ = sample_responses(
            model,
            tokenizer,
            pick_prompts(prompts, samples, seed),
            max_prompt_tokens=max_prompt_tokens,
            max_new_tokens=max_new_tokens,
            temperature=1.0,
        )
    ids, attention, response = batch(encoded, int(tokenizer.pad_token_id), device)
    policy, mask = response_logprobs(model, ids, attention, response)
    with reference_mode(model):
        reference, _ = response_logprobs(model, ids, attention, response)
    return float(response_kl(policy.float(), reference.float(), mask).mean())
