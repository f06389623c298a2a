"""What an answer is built from: the passages retrieved for a conversation, and the prompt rendered
from them within the model's context window.

The answer service (service/answering.py) and the trainer (trainer/prompts.py: training sees the
prompt serving sees) both call these, so a logged prompt can be rebuilt exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.settings import Settings
from rag.prompting import Passage, build_messages, retrieval_query
from rag.search import Retriever, SearchResult


@dataclass(frozen=True)
class Retrieval:
    """What an answer is built from: the search query, its result, the passages put in the prompt, and
    whether the service refuses instead of calling the model."""

    query: str
    result: SearchResult
    passages: list[Passage]
    refused: bool


def retrieve(
    retriever: Retriever, settings: Settings, conversation: list[dict[str, str]], groups: Sequence[str]
) -> Retrieval:
    """Search for a conversation (user/assistant turns ending with the question) as the caller in
    `groups` may see it; the trainer calls this too, to render prompts the way the service does."""
    user_turns = [m["content"] for m in conversation if m["role"] == "user"]
    query = retrieval_query(user_turns)[:4000]
    result = retriever.search(query, settings.search_k, list(groups))
    passages = [
        Passage(i, h.chunk_id, h.source, h.title, h.section, h.text, tuple(h.groups))
        for i, h in enumerate(result.hits[: settings.answer_passages], start=1)
    ]
    threshold = (
        settings.refusal_threshold
        if settings.refusal_threshold is not None
        else retriever.calibration.threshold
    )
    return Retrieval(query, result, passages, result.confidence < threshold or not passages)


def render_prompt(
    tokenizer: Any,
    context_window: int,
    conversation: list[dict[str, str]],
    passages: list[Passage],
    max_tokens: int,
) -> tuple[list[int], str]:
    """The prompt the policy is fed, as token ids and text: `build_messages` within the context window
    less `max_tokens`, through the tokenizer's chat template with the generation prompt."""
    budget = max(context_window - max_tokens, 64)

    def render(messages: list[dict[str, str]]) -> tuple[str, list[int]]:
        text: str = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return text, list(tokenizer(text, add_special_tokens=False)["input_ids"])

    messages, _dropped = build_messages(conversation, passages, lambda m: len(render(m)[1]), budget)
    text, ids = render(messages)
    if len(ids) > budget:  # the question alone is longer than the context: keep its end
        ids = ids[-budget:]
        text = tokenizer.decode(ids)
    return ids, text
