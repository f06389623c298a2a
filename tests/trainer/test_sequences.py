"""trainer.sequences: response log-probs from the cut logits window equal those of a full forward pass."""

from __future__ import annotations

from pathlib import Path

import torch

from trainer.models import load_tokenizer
from trainer.sequences import batch, response_logprobs, sequence_logprobs
from trainer.tokens import Encoded


def test_sequence_logprobs_match_a_full_forward_pass(tiny_base: Path) -> None:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    pad = load_tokenizer(str(tiny_base)).pad_token_id
    # prompts of different lengths, responses of different lengths: right padding in between
    encoded = [
        Encoded([1, 40, 41, 42, 43, 50, 51], 5),
        Encoded([1, 60, 70, 71, 72, 73], 2),
        Encoded([1, 80, 90], 2),
    ]
    expected = []
    for enc in encoded:
        with torch.no_grad():
            logps = model(input_ids=torch.tensor([enc.ids])).logits[0].log_softmax(-1)
        # token t is scored by the logits at t - 1
        expected.append(sum(float(logps[t - 1, enc.ids[t]]) for t in range(enc.prompt_len, len(enc.ids))))
    with torch.no_grad():
        got = sequence_logprobs(model, encoded, pad)
    assert torch.allclose(got, torch.tensor(expected), atol=1e-4)

    ids, attention, response = batch(encoded, pad, "cpu")
    with torch.no_grad():
        logps, mask = response_logprobs(model, ids, attention, response)
    assert logps.shape == mask.shape == (3, 5)  # window from the earliest response token (position 2) on
    assert mask.sum(dim=1).tolist() == [2, 4, 1]  # the response lengths
