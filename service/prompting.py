"""The RAG prompt: numbered passages, the rule to answer only from them and cite [n], the conversation.

Pure functions over plain data, so the trainer can rebuild exactly the prompt a logged answer saw.
`PROMPT_TEMPLATE_HASH` identifies this template in every stored answer: change the wording, and the
hash changes with it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SYSTEM_PROMPT = (
    "You are the company's internal knowledge assistant. Answer the employee's question using only the "
    "numbered passages below. Cite the passages you use with their numbers in square brackets, like [1]. "
    "If the passages do not contain the answer, say that the knowledge base does not cover it. Be concise."
)
PASSAGE_FORMAT = "[{n}] {title} — {section}\n{text}"
CONTEXT_HEADER = "Passages:\n\n"
REFUSAL_TEXT = "The knowledge base does not cover this question."
PROMPT_TEMPLATE_HASH = hashlib.sha256(
    "\x1f".join((SYSTEM_PROMPT, PASSAGE_FORMAT, CONTEXT_HEADER)).encode()
).hexdigest()[:16]

# words that point back into the conversation: a follow-up using them is searched together with the
# previous question ("where is it?" after "what is the VPN client called?")
_REFERRING = frozenset(
    [
        "it",
        "its",
        "it's",
        "that",
        "this",
        "these",
        "those",
        "there",
        "they",
        "them",
        "their",
        "he",
        "she",
        "him",
        "her",
        "one",
        "ones",
        "same",
    ]
)
_CITATION = re.compile(r"\[(\d{1,2})\]")


@dataclass(frozen=True)
class Passage:
    n: int
    chunk_id: str
    source: str
    title: str
    section: str
    text: str


def retrieval_query(user_turns: Sequence[str]) -> str:
    """The text to search with: the last question, plus the previous one when the last refers back to it
    (a pronoun like "it"/"there") or is too short to stand alone (three words or fewer)."""
    if not user_turns:
        return ""
    last = user_turns[-1].strip()
    if len(user_turns) < 2:
        return last
    words = re.findall(r"[a-z']+", last.lower())
    if len(words) <= 3 or any(w in _REFERRING for w in words):
        return f"{user_turns[-2].strip()} {last}"
    return last


def system_message(passages: Sequence[Passage]) -> str:
    body = "\n\n".join(
        PASSAGE_FORMAT.format(n=p.n, title=p.title or p.source, section=p.section or "-", text=p.text.strip())
        for p in passages
    )
    return f"{SYSTEM_PROMPT}\n\n{CONTEXT_HEADER}{body}"


def build_messages(
    conversation: Sequence[dict[str, str]],
    passages: Sequence[Passage],
    count_tokens: Callable[[list[dict[str, str]]], int],
    budget: int,
) -> tuple[list[dict[str, str]], int]:
    """Chat messages for the model: the system message with the passages, then as much of the
    conversation as fits in `budget` tokens, dropping the oldest turns first. The last user turn always
    stays; when even that does not fit, passages are dropped from the end. Returns (messages, dropped
    turns)."""
    turns = [m for m in conversation if m["role"] in ("user", "assistant")]
    kept_passages = list(passages)
    dropped = 0
    while True:
        messages = [{"role": "system", "content": system_message(kept_passages)}, *turns[dropped:]]
        if count_tokens(messages) <= budget:
            return messages, dropped
        if dropped < len(turns) - 1:
            dropped += 1
            while dropped < len(turns) - 1 and turns[dropped]["role"] != "user":
                dropped += 1  # a kept history starts with a user turn
        elif kept_passages:
            kept_passages.pop()
        else:
            return messages, dropped  # the question alone is over budget: the caller truncates it


def cited_numbers(answer: str, available: int) -> list[int]:
    """The passage numbers the answer cites, in order of first citation, ignoring ones that don't exist."""
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        n = int(match.group(1))
        if 1 <= n <= available and n not in seen:
            seen.append(n)
    return seen


def refusal_answer(closest: Sequence[Passage]) -> str:
    """What a refusal says: that the knowledge base does not cover it, and where to look instead."""
    if not closest:
        return REFUSAL_TEXT
    lines = [f"- {p.title or p.source} — {p.section or '-'} ({p.source})" for p in closest]
    return REFUSAL_TEXT + " The closest documents are:\n" + "\n".join(lines)
