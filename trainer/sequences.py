"""Log-probabilities of responses under a causal LM, for SFT, DPO and PPO."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainer.losses import token_logprobs
from trainer.tokens import Encoded, completion_mask, pad_right


def batch(
    encoded: Sequence[Encoded], pad_id: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, response_mask) right-padded, all (batch, seq), on `device`."""
    ids, attention = pad_right([e.ids for e in encoded], pad_id)
    response = completion_mask(encoded, ids.shape[1])
    return ids.to(device), attention.to(device), response.to(device)


def response_logprobs(
    model: Any, ids: torch.Tensor, attention: torch.Tensor, response: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(token log-probs, mask), both (batch, seq-1): position t scores token t+1; mask marks response tokens.

    Logits are computed only from the first response position on (`logits_to_keep`), so a long
    prompt costs its forward pass but not a (prompt × vocab) logits tensor.
    """
    first = int(response.float().argmax(dim=1).min()) if bool(response.any()) else ids.shape[1] - 1
    keep = ids.shape[1] - max(first - 1, 0)  # logits for positions first-1 .. seq-1
    out = model(input_ids=ids, attention_mask=attention, logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, :-1]  # (batch, keep-1, vocab): predicts tokens first .. seq-1
    labels = ids[:, ids.shape[1] - keep + 1 :]  # (batch, keep-1)
    mask = response[:, ids.shape[1] - keep + 1 :]
    return token_logprobs(logits, labels), mask


def sequence_logprobs(model: Any, encoded: Sequence[Encoded], pad_id: int) -> torch.Tensor:
    """(batch,) summed log-prob of each response given its prompt."""
    device = next(model.parameters()).device
    ids, attention, response = batch(encoded, pad_id, device)
    logps, mask = response_logprobs(model, ids, attention, response)
    return (logps * mask).sum(dim=1)
