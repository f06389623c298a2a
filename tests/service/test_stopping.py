"""Stop strings over streamed text and the repetition controls of the transformers engine."""

from __future__ import annotations

import torch

from service.generation.sampling import apply_repetition_penalty, banned_ngram_tokens, choose_next
from service.generation.stopping import StopMatcher


def test_text_that_may_start_a_stop_string_is_held_back() -> None:
    stop = StopMatcher(["Question:"])
    assert stop.feed("Call IT. Ques") == "Call IT. "
    assert stop.feed("tion: who") == "" and stop.stopped
    assert stop.text == "Call IT. " and stop.feed("more") == ""


def test_a_held_prefix_that_turns_out_harmless_is_shown() -> None:
    stop = StopMatcher(["Question:"])
    assert stop.feed("Que") == ""
    assert stop.feed("ue is long.") == "Queue is long."
    assert stop.flush() == "" and not stop.stopped


def test_repetition_penalty_by_hand() -> None:
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    out = apply_repetition_penalty(logits, [0, 1, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5, 3.0]
    assert apply_repetition_penalty(logits, [0], 1.0) is logits


def test_banned_ngrams_by_hand() -> None:
    # answer 5 6 7 5 6: the 3-gram (5, 6, 7) exists, the tail is (5, 6) -> 7 is banned
    assert banned_ngram_tokens([5, 6, 7, 5, 6], 3) == [7]
    assert banned_ngram_tokens([5, 6, 7], 3) == []
    assert banned_ngram_tokens([1, 2], 0) == []


def test_choose_next_never_repeats_a_banned_ngram_greedily() -> None:
    logits = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 9.0])  # greedy wants 7
    assert choose_next(logits, 0.0, 1.0, answer=[5, 6, 7, 5, 6], no_repeat_ngram_size=3) != 7
    assert choose_next(logits, 0.0, 1.0, answer=[5, 6, 7, 5, 6]) == 7
