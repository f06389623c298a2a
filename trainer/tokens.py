"""Prompt + response token sequences for training, cut to a length budget, and right-padded batches.

Prompts are the service's rendered chat text (special tokens included), so they are tokenized without
adding special tokens. When prompt + response is too long, the prompt loses tokens from the left (the
system preamble goes first) and the response is kept whole up to the budget: the response is what the
loss is about.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    prompt_len: int  # tokens of `ids` that belong to the prompt


def encode(tokenizer: Any, prompt: str, completion: str, max_length: int, *, add_eos: bool) -> Encoded:
    prompt_ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    completion_ids: list[int] = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if add_eos and tokenizer.eos_token_id is not None:
        completion_ids = [*completion_ids, tokenizer.eos_token_id]
    completion_ids = completion_ids[: max(1, max_length - 1)]
    room = max_length - len(completion_ids)
    prompt_ids = prompt_ids[-room:] if room > 0 else prompt_ids[-1:]
    return Encoded(prompt_ids + completion_ids, len(prompt_ids))


def encode_prompt(tokenizer: Any, prompt: str, max_length: int) -> list[int]:
    ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return ids[-max_length:]


def pad_right(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (batch, longest)."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return ids, mask


def pad_left(seqs: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both (batch, longest), padded on the left (for generation)."""
    longest = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), longest), dtype=torch.long)
    for row, seq in enumerate(seqs):
        if seq:
            ids[row, longest - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, longest - len(seq) :] = 1
    return ids, mask


def completion_mask(encoded: Sequence[Encoded], width: int) -> torch.Tensor:
    """(batch, width) 1 on response tokens, for right-padded batches of `encoded`."""
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, enc in enumerate(encoded):
        mask[row, enc.prompt_len : len(enc.ids)] = 1
    return mask
