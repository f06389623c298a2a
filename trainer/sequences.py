"""Sampled responses and their log-probabilities under a causal LM, for SFT, DPO, KTO and PPO; and the
progress hook their long phases report through."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from trainer.losses import token_logprobs
from trainer.tokens import Encoded, completion_mask, encode_prompt, pad_left, pad_right


def progress(**options: Any) -> Any:
    """The progress reporter of a long phase (rollouts, scoring, updates, reference passes): a tqdm bar
    with rate and ETA; `options` are tqdm's (total, desc, unit, initial, disable). The one place to
    swap in another reporter."""
    from tqdm.auto import tqdm

    return tqdm(**options)


@torch.no_grad()
def sample_responses(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_prompt_tokens: int,
    max_new_tokens: int,
    temperature: float,
    top_p: float = 1.0,
) -> tuple[list[Encoded], list[str]]:
    """One sampled response per prompt (a prompt over `max_prompt_tokens` drops its lowest-ranked
    passages: trainer.tokens.fit_prompt); (prompt + response token ids, each ending at its end-of-turn
    token when one came, response texts)."""
    pad, eos = int(tokenizer.pad_token_id), int(tokenizer.eos_token_id)
    prompt_ids = [encode_prompt(tokenizer, p, max_prompt_tokens) for p in prompts]
    ids, attention = pad_left(prompt_ids, pad)
    device = next(model.parameters()).device
    model.eval()
    out = model.generate(
        input_ids=ids.to(device),
        attention_mask=attention.to(device),
        do_sample=True,
        temperature=temperature,
        top_p=top_p,
        top_k=0,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    encoded, texts = [], []
    for row, prompt in enumerate(prompt_ids):
        response = out[row, ids.shape[1] :].tolist()
        if eos in response:  # generate pads only after a row's end-of-turn token
            response = response[: response.index(eos) + 1]  # keep the end-of-turn token
        encoded.append(Encoded(list(prompt) + response, len(prompt)))
        texts.append(tokenizer.decode(response, skip_special_tokens=True))
    return encoded, texts


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
