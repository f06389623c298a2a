"""trainer.tokens: prompt + response sequences cut to a budget, and padded batches."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from tests.service.tiny import tiny_tokenizer
from trainer.tokens import Encoded, completion_mask, encode, encode_prompt, pad_left, pad_right

PROMPT = "<|im_start|>user\nWhere is the HR department?<|im_end|>\n<|im_start|>assistant\n"
ANSWER = "It is on the 4th floor."


@pytest.fixture(scope="module")
def tok() -> Any:
    return tiny_tokenizer()


def ids(tok: Any, text: str) -> list[int]:
    out: list[int] = tok(text, add_special_tokens=False)["input_ids"]
    return out


def test_encode_keeps_the_chat_markup_and_adds_eos_only_when_asked(tok: Any) -> None:
    p, c = ids(tok, PROMPT), ids(tok, ANSWER)
    assert p[0] == tok.convert_tokens_to_ids("<|im_start|>")  # special tokens are parsed, not spelled out
    plain = encode(tok, PROMPT, ANSWER, 512, add_eos=False)
    assert plain == Encoded(p + c, len(p))
    assert tok.eos_token_id not in plain.ids[plain.prompt_len :]
    with_eos = encode(tok, PROMPT, ANSWER, 512, add_eos=True)
    assert with_eos == Encoded(p + c + [tok.eos_token_id], len(p))


def test_encode_cuts_the_prompt_from_the_left_and_keeps_the_response(tok: Any) -> None:
    p, c = ids(tok, PROMPT), ids(tok, ANSWER)
    budget = len(c) + 1 + 3  # response + EOS + 3 prompt tokens
    cut = encode(tok, PROMPT, ANSWER, budget, add_eos=True)
    assert cut == Encoded(p[-3:] + c + [tok.eos_token_id], 3)  # the end of the prompt survives
    assert len(cut.ids) == budget


def test_an_overlong_response_keeps_one_prompt_token(tok: Any) -> None:
    p, c = ids(tok, PROMPT), ids(tok, ANSWER)
    cut = encode(tok, PROMPT, ANSWER, 5, add_eos=True)
    # the response is cut to 4 tokens (its EOS goes with the cut tail) after the prompt's last token
    assert cut == Encoded(p[-1:] + c[:4], 1)


def test_encode_prompt_cuts_from_the_left(tok: Any) -> None:
    p = ids(tok, PROMPT)
    assert encode_prompt(tok, PROMPT, 4) == p[-4:]
    assert encode_prompt(tok, PROMPT, 1000) == p


def test_pad_right_and_left() -> None:
    seqs = [[5, 6, 7], [8]]
    ids_r, mask_r = pad_right(seqs, 0)
    assert ids_r.tolist() == [[5, 6, 7], [8, 0, 0]] and mask_r.tolist() == [[1, 1, 1], [1, 0, 0]]
    ids_l, mask_l = pad_left(seqs, 0)
    assert ids_l.tolist() == [[5, 6, 7], [0, 0, 8]] and mask_l.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert ids_r.dtype == mask_r.dtype == torch.long
    ids_e, mask_e = pad_left([[4, 4], []], 9)  # an empty prompt is all padding
    assert ids_e.tolist() == [[4, 4], [9, 9]] and mask_e.tolist() == [[1, 1], [0, 0]]


def test_completion_mask_marks_response_tokens_of_right_padded_rows() -> None:
    encoded = [Encoded([1, 2, 3], 2), Encoded([4, 5], 1), Encoded([6, 7, 8, 9], 1)]
    mask = completion_mask(encoded, 5)
    assert mask.shape == (3, 5)
    assert mask.tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0], [0, 1, 1, 1, 0]]
