"""Prompt + response token sequences for training, within a length budget, and padded batches.

Training sees the prompt that serving rendered. Prompts are the service's rendered chat text (special
tokens included), tokenized without adding special tokens. A prompt is never cut from the left: when
prompt + response is over budget, `fit_prompt` drops the lowest-ranked passages and renders the prompt
again with the service's own passage-dropping step (rag.prompting `build_messages` and
`question_message`), inside the chat framing the service stored (system turn, history, generation
header). The system turn, the question and passage [1] always stay; only when passage [1] alone is
over budget is its own text shortened from its end. A prompt that is not a rendered RAG prompt (a
conversational JSONL row) keeps its beginning (the system turn) and its end (the question), and loses
the middle.

Budgets come from the data, not constants: `length_budget` is the p95 of the prompts' token counts
plus the response budget (`derive_max_length` does it for a tokenizer and a list of prompts).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from rag.prompting import INSTRUCTION, QUESTION_FORMAT, Passage, build_messages

_QUESTION_START = QUESTION_FORMAT.split("{question}")[0].replace("{passages}", "")  # "\n\nQuestion: "
_QUESTION_END = QUESTION_FORMAT.split("{question}")[1].replace("{instruction}", INSTRUCTION)
_PASSAGE_SPLIT = re.compile(r"\n\n\[(\d+)\] ")
_FIRST_PASSAGE = "[1] "
MIN_RESPONSE_SHARE = 0.5  # an over-long response is cut (from its end) to leave the prompt at least half


@dataclass(frozen=True)
class Encoded:
    ids: list[int]
    prompt_len: int  # tokens of `ids` that belong to the prompt


@dataclass(frozen=True)
class RagPrompt:
    """A rendered RAG prompt taken apart: `prefix + question_message(passages, question) + suffix`."""

    prefix: str  # the chat framing before the last user turn's content: system turn, history, header
    passages: tuple[str, ...]  # the passages' texts, best-ranked first ([1], [2], ...)
    question: str
    suffix: str  # after the instruction: end of turn and the assistant's generation header

    def render(self, passages: Sequence[str]) -> str:
        return self.prefix + self.content(passages) + self.suffix

    def content(self, passages: Sequence[str]) -> str:
        from rag.prompting import question_message

        return question_message(_as_passages(passages), self.question)


def _as_passages(texts: Sequence[str]) -> list[Passage]:
    return [Passage(n, "", "", "", "", text) for n, text in enumerate(texts, start=1)]


def parse_rag_prompt(prompt: str) -> RagPrompt | None:
    """The parts of a prompt the service rendered (its last user turn is the numbered passages, the
    question and the rule), or None when it is not one. Rendering the parts with every passage gives
    the prompt back exactly."""
    end = prompt.rfind(_QUESTION_END)
    if end < 0:
        return None
    question_at = prompt.rfind(_QUESTION_START, 0, end)
    if question_at < 0:
        return None
    question = prompt[question_at + len(_QUESTION_START) : end]
    suffix = prompt[end + len(_QUESTION_END) :]
    # the passage block starts at a line-initial "[1] "; the rightmost one whose block numbers 1, 2, ...
    at = prompt.rfind(_FIRST_PASSAGE, 0, question_at)
    while at >= 0:
        if at == 0 or prompt[at - 1] in "\n>":
            block = prompt[at + len(_FIRST_PASSAGE) : question_at]
            pieces = _PASSAGE_SPLIT.split(block)  # text1, "2", text2, "3", text3, ...
            numbers = [int(n) for n in pieces[1::2]]
            if numbers == list(range(2, len(numbers) + 2)):
                parts = RagPrompt(prompt[:at], tuple(pieces[0::2]), question, suffix)
                if parts.render(parts.passages) == prompt:
                    return parts
        at = prompt.rfind(_FIRST_PASSAGE, 0, at)
    return None


def count(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def fit_prompt(tokenizer: Any, prompt: str, budget: int) -> str:
    """The prompt within `budget` tokens: unchanged when it fits; a RAG prompt rendered again without
    its lowest-ranked passages (passage [1] kept, shortened from its end only when it alone is too
    long); any other prompt with its middle left out (its beginning and end kept)."""
    if count(tokenizer, prompt) <= budget:
        return prompt
    parts = parse_rag_prompt(prompt)
    if parts is None or not parts.passages:
        return _cut_middle(tokenizer, prompt, budget)

    def tokens(messages: list[dict[str, str]]) -> int:
        return count(tokenizer, parts.prefix + messages[-1]["content"] + parts.suffix)

    conversation = [{"role": "user", "content": parts.question}]
    messages, _ = build_messages(conversation, _as_passages(parts.passages), tokens, budget)
    if tokens(messages) <= budget and messages[-1]["content"] != parts.content([]):
        return parts.prefix + messages[-1]["content"] + parts.suffix
    return _shorten_first_passage(tokenizer, parts, budget)


def _shorten_first_passage(tokenizer: Any, parts: RagPrompt, budget: int) -> str:
    """Passage [1] alone, as many of its leading words as fit (at least one)."""
    words = parts.passages[0].split(" ")
    low, high = 1, len(words)  # the longest prefix of words that fits, by bisection
    while low < high:
        mid = (low + high + 1) // 2
        if count(tokenizer, parts.render([" ".join(words[:mid])])) <= budget:
            low = mid
        else:
            high = mid - 1
    return parts.render([" ".join(words[:low])])


def _cut_middle(tokenizer: Any, prompt: str, budget: int) -> str:
    """A quarter of the budget from the beginning, the rest from the end (token boundaries)."""
    ids: list[int] = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    head = max(budget // 4, 1)
    tail = max(budget - head, 1)
    return str(tokenizer.decode(ids[:head]) + tokenizer.decode(ids[-tail:]))


def encode(tokenizer: Any, prompt: str, completion: str, max_length: int, *, add_eos: bool) -> Encoded:
    """Prompt + completion ids within `max_length`: the prompt fitted (`fit_prompt`) to what the
    completion leaves, but to at least half the budget; a completion longer than the rest is cut from
    its end."""
    completion_ids: list[int] = tokenizer(completion, add_special_tokens=False)["input_ids"]
    if add_eos and tokenizer.eos_token_id is not None:
        completion_ids = [*completion_ids, tokenizer.eos_token_id]
    room = max(max_length - len(completion_ids), math.ceil(max_length * MIN_RESPONSE_SHARE))
    prompt_ids: list[int] = tokenizer(fit_prompt(tokenizer, prompt, room), add_special_tokens=False)[
        "input_ids"
    ]
    completion_ids = completion_ids[: max(1, max_length - len(prompt_ids))]
    return Encoded(prompt_ids + completion_ids, len(prompt_ids))


def encode_prompt(tokenizer: Any, prompt: str, max_length: int) -> list[int]:
    """The ids of the prompt fitted to `max_length` tokens (`fit_prompt`)."""
    ids: list[int] = tokenizer(fit_prompt(tokenizer, prompt, max_length), add_special_tokens=False)[
        "input_ids"
    ]
    return ids


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of `values` with linear interpolation between order statistics (numpy's default).
    E.g. quantile([1, 2, 3, 4], 0.5) = 2.5; quantile([10, 20], 0.95) = 19.5."""
    if not values:
        raise ValueError("quantile of no values")
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def length_budget(prompt_lengths: Sequence[int], response_tokens: int, q: float = 0.95) -> int:
    """Longest prompt + response: the q-quantile of the prompts' token counts (rounded up) plus the
    response budget."""
    return math.ceil(quantile(prompt_lengths, q)) + response_tokens


def derive_max_length(tokenizer: Any, prompts: Sequence[str], response_tokens: int, q: float = 0.95) -> int:
    """`length_budget` of the distinct `prompts` under `tokenizer` (at least response_tokens + 64
    without prompts)."""
    distinct = list(dict.fromkeys(p for p in prompts if p))
    if not distinct:
        return response_tokens + 64
    return length_budget([count(tokenizer, p) for p in distinct], response_tokens, q)


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
