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
