"""trainer.shared_prompt: answers that share a prompt run that prompt once, and the log-probs and the
gradients are those of the plain padded forward pass, one sequence per answer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from trainer.losses import token_logprobs
from trainer.ppo import mini_batches
from trainer.shared_prompt import Grouped, grouped_forward
from trainer.tokens import Encoded

PAD = 0


def answers() -> list[Encoded]:
    p, q = [5, 6, 7, 8, 9], [11, 12, 13]
    return [
        Encoded([*p, 20, 21, 22], len(p)),
        Encoded([*p, 23], len(p)),
        Encoded([*p, 24, 25], len(p)),
        Encoded([*q, 26, 27, 28, 29], len(q)),
        Encoded([*p, 30], len(p)),  # the same prompt again, not next to its group: a group of its own
    ]


def test_consecutive_answers_to_one_prompt_form_a_group() -> None:
    batch = Grouped.of(answers(), PAD)
    assert batch.sizes == (3, 1, 1) and [p.tolist() for p in batch.prompts] == [
        [5, 6, 7, 8, 9],
        [11, 12, 13],
        [5, 6, 7, 8, 9],
    ]
    assert batch.responses.tolist()[:2] == [[20, 21, 22, 0], [23, 0, 0, 0]]
    assert batch.mask.sum(dim=1).tolist() == [3, 1, 2, 4, 1]
    sub, rows = batch.select([1, 0])
    assert rows == [3, 0, 1, 2] and sub.sizes == (1, 3)
    assert sub.responses[0].tolist() == [26, 27, 28, 29]
    with pytest.raises(ValueError):
        Grouped.of([], PAD)


def test_mini_batches_take_whole_groups() -> None:
    # sizes 4,4,4 and 8 rows per step: two groups, then the last one
    assert mini_batches([2, 0, 1], [4, 4, 4], 8) == [[2, 0], [1]]
    assert mini_batches([0, 1, 2], [1, 3, 1], 2) == [[0, 1], [2]]
    assert mini_batches([0, 1], [4, 4], 1) == [[0], [1]]


def padded_logprobs(model: torch.nn.Module, encoded: list[Encoded]) -> list[torch.Tensor]:
    """Each answer's token log-probs from its own full sequence."""
    out = []
    for e in encoded:
        logits = model(input_ids=torch.tensor([e.ids])).logits[0, e.prompt_len - 1 : -1]
        out.append(token_logprobs(logits[None], torch.tensor([e.ids[e.prompt_len :]]))[0])
    return out


def test_grouped_logprobs_and_gradients_match_the_padded_forward(tiny_base: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(str(tiny_base), dtype=torch.float32),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    encoded = answers()
    lora = [p for n, p in model.named_parameters() if p.requires_grad]

    batch = Grouped.of(encoded, PAD)
    logits, hidden = grouped_forward(model, batch, hidden=True)
    assert logits.shape[:2] == batch.responses.shape and hidden is not None
    grouped = token_logprobs(logits, batch.responses)
    (grouped * batch.mask).sum().backward()
    grouped_grads = [p.grad.clone() for p in lora]
    model.zero_grad()

    plain = padded_logprobs(model, encoded)
    torch.stack([x.sum() for x in plain]).sum().backward()
    for row, expected in enumerate(plain):
        got = grouped[row][batch.mask[row].bool()]
        assert got.tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    for got, expected in zip(grouped_grads, [p.grad for p in lora], strict=True):
        assert torch.allclose(got, expected, atol=1e-5), (got - expected).abs().max()
