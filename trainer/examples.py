"""The trainer's examples: what one piece of training data says, and which question it asks.

Frozen dataclasses (the losses read `prompt`, `chosen`/`rejected` or `completion`, `label`, `weight`):
- `PreferencePair`: the chosen answer was preferred to the rejected one (a side-by-side choice A/B, or
  a correction over the answer it replaced: `correction_pairs`);
- `Tie`: a side-by-side `tie` (both fine) or `both_bad` (neither acceptable): no winner;
- `ThumbExample`: an answer labelled good (thumbs up) or bad (thumbs down, with its reasons);
- `Demonstration`: the answer as it should have been (a correction, a golden answer).

Prompts are TRL's standard format: `AnswerRecord.prompt`, the exact chat-template rendering the model saw
with its retrieved passages (feedback.export says why, and what the trainer must do with it). Rows of a
conversational JSONL file keep their messages instead (`prompt_messages`, `Demonstration.messages`)
and get `prompt == ""` until `render_prompts` renders them with a tokenizer's chat template.

`prompt_id` groups examples that ask the same thing, for the held-out split: the sha256 of the question
a rendered RAG prompt asks (or of the whole prompt when it is not one), case and spacing normalized. So
the same question asked with other passages or history, a golden question and an employee's, all
share an id and never land on both sides of a split.

Where examples come from: the store (trainer.feedback_data), TRL JSONL files (trainer.jsonl), the
golden set (trainer.prompts); what makes them fit to learn from: trainer.hygiene.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

from rag.prompting import INSTRUCTION, QUESTION_FORMAT
from trainer.errors import DataError

Message = dict[str, str]
Position = Literal["left", "right"]


@dataclass(frozen=True)
class PreferencePair:
    """`chosen` was preferred to `rejected` as the answer to `prompt`."""

    prompt: str
    chosen: str
    rejected: str
    prompt_id: str
    user_id: str | None
    chosen_position: Position | None  # where the chosen answer was shown; None: not shown side by side
    source: Literal["comparison", "correction", "jsonl"]  # correction: the rewrite over what it replaced
    weight: float = 1.0
    comparison_id: str | None = None
    prompt_messages: tuple[Message, ...] | None = None  # a conversational prompt, until render_prompts


@dataclass(frozen=True)
class Tie:
    """A side-by-side choice without a winner: `tie` (both fine) or `both_bad` (neither acceptable).
    `a` was shown on the left, `b` on the right."""

    prompt: str
    a: str
    b: str
    prompt_id: str
    user_id: str | None
    kind: Literal["tie", "both_bad"]
    comparison_id: str | None = None


@dataclass(frozen=True)
class ThumbExample:
    """`completion` judged good (`label` True) or bad as the answer to `prompt`; `reasons` say what was
    wrong. Source `both_bad`: one side of a side-by-side choice that rejected both."""

    prompt: str
    completion: str
    label: bool
    reasons: tuple[str, ...]
    prompt_id: str
    user_id: str | None
    source: Literal["vote", "both_bad", "jsonl"]
    weight: float = 1.0
    answer_id: str | None = None
    prompt_messages: tuple[Message, ...] | None = None  # a conversational prompt, until render_prompts


@dataclass(frozen=True)
class Demonstration:
    """`completion` is the answer `prompt` should get. A conversational JSONL row keeps its whole
    conversation in `messages` (the last turn is the assistant's, = `completion`)."""

    prompt: str
    completion: str
    prompt_id: str
    source: Literal["correction", "golden", "jsonl"]
    user_id: str | None
    messages: tuple[Message, ...] | None = None
    answer_id: str | None = None
    corrected: str | None = None  # the answer this correction replaced (a correction's only)


Example = TypeVar("Example", PreferencePair, Tie, ThumbExample, Demonstration)

_QUESTION_START = QUESTION_FORMAT.split("{question}")[0].replace("{passages}", "")  # "\n\nQuestion: "
_QUESTION_END = QUESTION_FORMAT.split("{question}")[1].replace("{instruction}", INSTRUCTION)


def prompt_key(prompt: str) -> str:
    """What a prompt asks: the question of a prompt rendered from the service's RAG template (its last
    user turn), else the prompt itself."""
    end = prompt.rfind(_QUESTION_END)
    start = prompt.rfind(_QUESTION_START, 0, end) if end >= 0 else -1
    return prompt if start < 0 else prompt[start + len(_QUESTION_START) : end]


def prompt_id(prompt: str) -> str:
    """sha256 (hex) of `prompt_key(prompt)` in lower case with runs of spaces made one space."""
    normalized = " ".join(prompt_key(prompt).split()).casefold()
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


def conversation_id(messages: Sequence[Message]) -> str:
    """The `prompt_id` of a conversation: its last user turn's."""
    questions = [m["content"] for m in messages if m["role"] == "user"]
    return prompt_id(questions[-1] if questions else "")


# -- chat templates ---------------------------------------------------------------------------------


def render_chat(tokenizer: Any, messages: Sequence[Message]) -> str:
    """The prompt text of a conversation: the tokenizer's chat template with the generation prompt."""
    return str(tokenizer.apply_chat_template(list(messages), add_generation_prompt=True, tokenize=False))


def render_messages(tokenizer: Any, messages: Sequence[Message]) -> tuple[str, str]:
    """A conversation that ends with the assistant's answer as (prompt, completion): the turns before the
    answer through the chat template (`render_chat`), and the answer."""
    if not messages or messages[-1].get("role") != "assistant":
        raise DataError("a demonstration's messages must end with the assistant's answer")
    return render_chat(tokenizer, messages[:-1]), messages[-1]["content"]


def render_prompts(items: Sequence[Example], tokenizer: Any) -> list[Example]:
    """The items with the prompt of each conversational row rendered by the tokenizer's chat template
    (render it with the tokenizer of the model that trains on it); other items unchanged."""
    out: list[Example] = []
    for item in items:
        if isinstance(item, Demonstration) and item.messages is not None and not item.prompt:
            item = replace(item, prompt=render_messages(tokenizer, item.messages)[0])
        elif isinstance(item, PreferencePair | ThumbExample) and item.prompt_messages and not item.prompt:
            item = replace(item, prompt=render_chat(tokenizer, item.prompt_messages))
        out.append(item)
    return out


def correction_pairs(demonstrations: Sequence[Demonstration]) -> list[PreferencePair]:
    """An employee who rewrites an answer prefers the rewrite to it: one pair (correction over the answer
    it replaced) per correction whose texts differ, in the demonstrations' order. Golden and JSONL
    demonstrations replaced nothing and make none."""
    return [
        PreferencePair(d.prompt, d.completion, d.corrected, d.prompt_id, d.user_id, None, "correction")
        for d in demonstrations
        if d.source == "correction" and d.corrected and d.corrected.strip() != d.completion.strip()
    ]
