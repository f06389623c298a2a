"""Next-token choice: greedy, temperature and nucleus (top-p) sampling. Pure tensor functions."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def top_p_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:  # (vocab,) -> (vocab,)
    """Logits with every token outside the smallest set whose probability reaches `top_p` set to -inf.

    The most likely token always stays, so top_p -> 0 is greedy and top_p = 1 keeps everything.
    """
    import torch

    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    before = torch.cumsum(probs, dim=-1) - probs  # probability mass of the tokens ranked above each one
    drop_sorted = before >= top_p
    drop_sorted[0] = False
    drop = torch.zeros_like(drop_sorted).scatter(0, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def choose_token(
    logits: torch.Tensor, temperature: float, top_p: float, generator: torch.Generator | None = None
) -> int:  # logits: (vocab,)
    """Greedy when temperature is 0, otherwise a sample from softmax(logits / temperature) within top-p."""
    import torch

    if temperature <= 0.0:
        return int(torch.argmax(logits).item())
    scaled = top_p_filter(logits.float() / temperature, top_p)
    probs = torch.softmax(scaled, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator).item())


def apply_repetition_penalty(logits: torch.Tensor, seen: list[int], penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty: the logits (vocab,) of tokens in `seen` divided by `penalty` when
    positive and multiplied by it when negative, so a seen token always becomes less likely. 1.0 = off."""
    import torch

    if penalty == 1.0 or not seen:
        return logits
    index = torch.tensor(sorted(set(seen)), device=logits.device)
    picked = logits.index_select(0, index)
    picked = torch.where(picked > 0, picked / penalty, picked * penalty)
    return logits.index_copy(0, index, picked)


def banned_ngram_tokens(ids: list[int], n: int) -> list[int]:
    """Tokens that would complete an n-gram already in `ids` (the answer so far): the tokens that
    followed each earlier occurrence of its last n-1 tokens. Empty when n < 1 or the answer is short."""
    if n < 1 or len(ids) < n - 1:
        return []
    if n == 1:
        return sorted(set(ids))
    tail = tuple(ids[len(ids) - (n - 1) :])
    return sorted({ids[i + n - 1] for i in range(len(ids) - n + 1) if tuple(ids[i : i + n - 1]) == tail})


def choose_next(
    logits: torch.Tensor,
    temperature: float,
    top_p: float,
    *,
    answer: list[int],
    repetition_penalty: float = 1.0,
    no_repeat_ngram_size: int = 0,
    generator: torch.Generator | None = None,
) -> int:  # logits: (vocab,)
    """`choose_token` after the repetition penalty on the tokens of the `answer` so far and the ban of
    tokens that would repeat one of its n-grams."""
    logits = apply_repetition_penalty(logits, answer, repetition_penalty)
    banned = banned_ngram_tokens(answer, no_repeat_ngram_size)
    if banned:
        logits = logits.clone()
        logits[banned] = float("-inf")
    return choose_token(logits, temperature, top_p, generator)
