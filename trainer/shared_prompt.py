"""Forward passes over answers grouped by the prompt they share.

PPO with the group baseline samples k answers to each prompt, and a served prompt (system turn plus
retrieved passages) is ~700 tokens where an answer is ~50. Scoring the k answers as k padded
sequences runs the prompt k times. Here each prompt runs once: its key/value cache is repeated k
times (`DynamicCache.batch_repeat_interleave`) and the k answers continue from it, so a group of 4
costs one prompt plus 4 answers, about a third of the tokens. Gradients flow through the shared
prompt pass (the LoRA weights act on the prompt's keys and values too), so training on the grouped
forward is the same as on the padded one, up to float rounding (tests/trainer/test_shared_prompt.py).

Layout: every per-token tensor is (answers, width), where column j belongs to answer token j: the
logits in column j are those that predict it (column 0 from the prompt's last position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from trainer.tokens import Encoded


@dataclass(frozen=True)
class Grouped:
    """Sampled answers, consecutive answers to the same prompt forming one group."""

    prompts: tuple[torch.Tensor, ...]  # one (prompt_len,) per group
    sizes: tuple[int, ...]  # answers per group
    responses: torch.Tensor  # (answers, width) right-padded answer token ids
    mask: torch.Tensor  # (answers, width) 1 on answer tokens

    @classmethod
    def of(cls, encoded: Sequence[Encoded], pad_id: int) -> Grouped:
        if not encoded:
            raise ValueError("no answers to group")
        prompts: list[list[int]] = []
        sizes: list[int] = []
        for e in encoded:
            prompt = list(e.ids[: e.prompt_len])
            if prompts and prompts[-1] == prompt:
                sizes[-1] += 1
            else:
                prompts.append(prompt)
                sizes.append(1)
        answers = [list(e.ids[e.prompt_len :]) for e in encoded]
        width = max(1, *(len(a) for a in answers))
        responses = torch.full((len(answers), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(answers), width), dtype=torch.long)
        for row, answer in enumerate(answers):
            responses[row, : len(answer)] = torch.tensor(answer, dtype=torch.long)
            mask[row, : len(answer)] = 1
        return cls(tuple(torch.tensor(p, dtype=torch.long) for p in prompts), tuple(sizes), responses, mask)

    def group_rows(self) -> list[list[int]]:
        """The answer rows of each group."""
        out, start = [], 0
        for k in self.sizes:
            out.append(list(range(start, start + k)))
            start += k
        return out

    def select(self, groups: Sequence[int]) -> tuple[Grouped, list[int]]:
        """The sub-batch of whole groups (in the given order) and its answer rows in this batch."""
        spans = self.group_rows()
        rows = [r for g in groups for r in spans[g]]
        return (
            Grouped(
                tuple(self.prompts[g] for g in groups),
                tuple(self.sizes[g] for g in groups),
                self.responses[rows],
                self.mask[rows],
            ),
            rows,
        )

    def to(self, device: Any) -> Grouped:
        prompts = tuple(p.to(device) for p in self.prompts)
        return Grouped(prompts, self.sizes, self.responses.to(device), self.mask.to(device))


def grouped_forward(
    model: Any, batch: Grouped, *, hidden: bool = False
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(logits (answers, width, vocab), last hidden states (answers, width, hidden) or None) of a causal
    LM over grouped answers; column j holds the outputs that predict answer token j."""
    cache_kw = cache_keyword(model)
    logits: list[torch.Tensor] = []
    states: list[torch.Tensor] = []
    width = batch.responses.shape[1]
    start = 0
    for prompt, k in zip(batch.prompts, batch.sizes, strict=True):
        answers = batch.responses[start : start + k]
        longest = int(batch.mask[start : start + k].sum(dim=1).max())
        start += k
        first = model(input_ids=prompt[None], use_cache=True, output_hidden_states=hidden, logits_to_keep=1)
        parts = [first.logits[:, -1:].expand(k, -1, -1)]
        hidden_parts = [first.hidden_states[-1][:, -1:].expand(k, -1, -1)] if hidden else []
        if longest > 1:  # answer tokens 0 .. longest-2 predict tokens 1 .. longest-1
            cache = first.cache if cache_kw == "cache" else first.past_key_values
            cache.batch_repeat_interleave(k)
            n, fed = prompt.shape[0], longest - 1
            rest = model(
                input_ids=answers[:, :fed],
                **{cache_kw: cache},
                attention_mask=torch.ones((k, n + fed), dtype=torch.long, device=prompt.device),
                position_ids=torch.arange(n, n + fed, device=prompt.device).expand(k, -1),
                output_hidden_states=hidden,
            )
            parts.append(rest.logits)
            if hidden:
                hidden_parts.append(rest.hidden_states[-1])
        logits.append(pad_width(torch.cat(parts, dim=1), width))
        if hidden:
            states.append(pad_width(torch.cat(hidden_parts, dim=1), width))
    return torch.cat(logits), (torch.cat(states) if hidden else None)


def cache_keyword(model: Any) -> str:
    """transformers 5.25 renamed the forward's `past_key_values` (and the output's) to `cache`."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def pad_width(x: torch.Tensor, width: int) -> torch.Tensor:
    """(k, w, d) -> (k, width, d) with zeros after column w (masked positions)."""
    if x.shape[1] == width:
        return x
    return torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1]))
