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


def test_a_short_prompt_is_kept_whole_and_an_overlong_response_is_cut_from_its_end(tok: Any) -> None:
    p, c = ids(tok, PROMPT), ids(tok, ANSWER)
    fits = encode(tok, PROMPT, ANSWER, len(p) + len(c) + 1, add_eos=True)
    assert fits == Encoded(p + c + [tok.eos_token_id], len(p))
    # a response longer than the budget leaves the prompt half of it, and loses its own end
    long_answer = " ".join([ANSWER] * 10)
    cut = encode(tok, PROMPT, long_answer, 2 * len(p), add_eos=True)
    assert cut == Encoded(p + ids(tok, long_answer)[: len(p)], len(p))


def test_a_prompt_without_passages_keeps_its_beginning_and_end(tok: Any) -> None:
    p = ids(tok, PROMPT)
    kept = encode_prompt(tok, PROMPT, 8)
    assert len(kept) <= 8 + 1  # decoding at a token boundary can re-merge one pair
    assert kept[0] == p[0] and kept[-3:] == p[-3:]  # the start of the first turn and the generation header
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
