"""trainer.divergence: KL(policy ‖ reference) per response, by hand and on fresh samples of a tiny model."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tests.trainer.test_dpo import config, perturb_policy
from trainer.divergence import response_kl, sampled_kl
from trainer.models import load_policy, load_tokenizer

PROMPTS = [f"<|im_start|>user\nWhere is office {i}?<|im_end|>\n<|im_start|>assistant\n" for i in range(3)]


def test_response_kl_by_hand() -> None:
    logprobs = torch.log(torch.tensor([[0.5, 0.25, 0.9], [0.2, 0.2, 0.2]]))
    reference = torch.log(torch.tensor([[0.25, 0.25, 0.1], [0.4, 0.1, 0.2]]))
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # row 0: ln 2 + 0 (the third token is padding); row 1: ln 0.5 + ln 2 + 0 = 0
    assert response_kl(logprobs, reference, mask).tolist() == pytest.approx([math.log(2), 0.0], abs=1e-6)


def test_sampled_kl_is_zero_at_the_reference_and_grows_when_the_policy_moves(tiny_base: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_base))
    model = load_policy(str(tiny_base), None, config(), with_reference=True)
    options = {"samples": 4, "max_new_tokens": 6, "max_prompt_tokens": 64, "seed": 3}
    assert sampled_kl(model, tokenizer, PROMPTS, **options) == pytest.approx(0.0, abs=1e-5)  # LoRA B = 0
    perturb_policy(model)
    moved = sampled_kl(model, tokenizer, PROMPTS, **options)
    assert moved > 0.01
    assert sampled_kl(model, tokenizer, PROMPTS, **options) == pytest.approx(moved, rel=1e-5)  # seeded
    assert sampled_kl(model, tokenizer, [], **options) == 0.0
