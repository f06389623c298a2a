"""KL(policy ‖ reference) per response, measured on fresh samples of the policy.

The budget check for an algorithm that does not sample while it trains (DPO): before publishing, the
trained policy answers a seeded handful of prompts, and the log-probability ratio of each answer under
the policy and under the reference (the champion: `trainer.models.reference_mode`) is summed over the
answer's tokens (the k1 estimator), at the sampling temperature, then averaged over the answers. PPO
reports the same figure from its own final samples (`trainer.ppo.PPOTrainer.measure_kl`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainer.losses import token_logprobs
from trainer.models import reference_mode
from trainer.tokens import Encoded, encode_prompt, pad_left, pad_right


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
    temperature: float,
    seed: int,
) -> float:
    """Mean KL(policy ‖ reference) per response over `samples` answers the policy samples to `prompts`
    (picked in a seeded order, reused when there are fewer). 0.0 without prompts."""
    from trainer.ppo import labels_for, pick_prompts, span

    if not prompts or samples <= 0:
        return 0.0
    device = next(model.parameters()).device
    pad, eos = int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)
    chosen = pick_prompts(prompts, samples, seed)
    prompt_ids = [encode_prompt(tokenizer, p, max_prompt_tokens) for p in chosen]
    ids, attention = pad_left(prompt_ids, pad)
    model.eval()
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=ids.to(device),
            attention_mask=attention.to(device),
            do_sample=True,
            temperature=temperature,
            top_k=0,
            top_p=1.0,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos,
            pad_token_id=pad,
        )
    encoded = []
    for row, prompt in enumerate(prompt_ids):
        response = out[row, ids.shape[1] :].tolist()
        if eos in response:
            response = response[: response.index(eos) + 1]
        encoded.append(Encoded(list(prompt) + response, len(prompt)))
    batch, batch_attention = pad_right([e.ids for e in encoded], pad)
    batch, batch_attention = batch.to(device), batch_attention.to(device)
    keep, mask = span(encoded, batch.shape[1])
    labels = labels_for(batch, keep)

    def logprobs() -> torch.Tensor:
        logits = model(input_ids=batch, attention_mask=batch_attention, logits_to_keep=keep).logits
        return token_logprobs(logits[:, :-1].float() / temperature, labels)

    policy = logprobs()
    with reference_mode(model):
        reference = logprobs()
    return float(response_kl(policy, reference, mask.to(device)).mean())
