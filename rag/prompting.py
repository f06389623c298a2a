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

# Measured on SmolLM2-135M with the first 14 answerable golden questions (greedy, 60 tokens):
# - the rule in a system message with titled passages: 0 answers cite anything;
# - passages + question + the rule below in the user turn: 11/14 cite the right source; 2/14 answers are
#   bare citations ("1. [1] 2. [2]");
# - asking for "a full sentence" with an example answer: the model copies the example into its answer.
# Answers without [n] are attributed to passages by shared words (`attributed_numbers`).
PASSAGE_FORMAT = "[{n}] {text}"
INSTRUCTION = (
    "Answer briefly using the passages above and cite the passage number in brackets, like [1]. "
    "If the passages do not answer the question, say that the knowledge base does not cover it."
)
QUESTION_FORMAT = "{passages}\n\nQuestion: {question}\n{instruction}"
REFUSAL_TEXT = "The knowledge base does not cover this question."
# An answer that starts writing the prompt's scaffolding ends there (the small model's echo of the
# prompt); the chat template's own turn markers end it too.
STOP_STRINGS = ("Question:", "\nQuestion", "Answer briefly using", "<|im_start|>", "<|im_end|>")
PROMPT_TEMPLATE_HASH = hashlib.sha256(
    "\x1f".join((PASSAGE_FORMAT, INSTRUCTION, QUESTION_FORMAT)).encode()
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
    groups: tuple[str, ...] = ()  # access groups of its document (empty: public)


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


def question_message(passages: Sequence[Passage], question: str) -> str:
    """The last user turn the model sees: the numbered passages, the question, the rule."""
    body = "\n\n".join(PASSAGE_FORMAT.format(n=p.n, text=p.text.strip()) for p in passages)
    return QUESTION_FORMAT.format(passages=body, question=question.strip(), instruction=INSTRUCTION)


def build_messages(
    conversation: Sequence[dict[str, str]],
    passages: Sequence[Passage],
    count_tokens: Callable[[list[dict[str, str]]], int],
    budget: int,
) -> tuple[list[dict[str, str]], int]:
    """Chat messages for the model: as much of the earlier conversation as fits in `budget` tokens
    (oldest turns dropped first, a kept history starts with a user turn), then the question with the
    passages. When even the question alone does not fit, passages are dropped from the end. Returns
    (messages, dropped turns)."""
    turns = [m for m in conversation if m["role"] in ("user", "assistant")]
    history, question = turns[:-1], turns[-1]["content"]
    kept_passages = list(passages)
    dropped = 0
    while True:
        last = {"role": "user", "content": question_message(kept_passages, question)}
        messages = [*history[dropped:], last]
        if count_tokens(messages) <= budget:
            return messages, dropped
        if dropped < len(history):
            dropped += 1
            while dropped < len(history) and history[dropped]["role"] != "user":
                dropped += 1
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


_WORDS = re.compile(r"[a-z0-9]+(?:[.,][0-9]+)?")
_SENTENCES = re.compile(r"(?<=[.!?])\s+|\n+")


def _content_words(text: str) -> set[str]:
    from rag.lexical import STOPWORDS

    return {w for w in _WORDS.findall(text.lower()) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def attributed_numbers(
    answer: str, passages: Sequence[Passage], min_shared: int = 2, min_share: float = 0.3
) -> list[int]:
    """Passages an uncited answer draws on: for each sentence, the passage sharing the most content words
    with it, when they share at least `min_shared` words and `min_share` of the sentence's words."""
    words = [(p.n, _content_words(p.text)) for p in passages]
    found: list[int] = []
    for sentence in _SENTENCES.split(answer):
        mine = _content_words(sentence)
        if not mine:
            continue
        best_n, best = 0, 0
        for n, theirs in words:
            shared = len(mine & theirs)
            if shared > best:
                best_n, best = n, shared
        if best >= min_shared and best / len(mine) >= min_share and best_n not in found:
            found.append(best_n)
    return found


def refusal_answer(closest: Sequence[Passage]) -> str:
    """What a refusal says: that the knowledge base does not cover it, and where to look instead."""
    if not closest:
        return REFUSAL_TEXT
    lines = [f"- {p.title or p.source} — {p.section or '-'} ({p.source})" for p in closest]
    return REFUSAL_TEXT + " The closest documents are:\n" + "\n".join(lines)


_PROMPT_PASSAGE = re.compile(r"(?:^|\n)\[(\d{1,2})\] ")


def parse_prompt(prompt: str) -> tuple[list[str], str]:
    """(passage texts [1] first, question) of a prompt `question_message` wrote, wherever it sits in the
    rendered chat text: the inverse the trainer needs to check answers against a logged prompt's
    passages. ([], "") for a prompt of another shape."""
    start = prompt.rfind("Question: ")
    if start < 0:
        return [], ""
    end = prompt.find("\n", start)
    question = prompt[start + len("Question: ") : end if end >= 0 else None].strip()
    body = prompt[:start].rstrip("\n")
    matches = list(_PROMPT_PASSAGE.finditer(body))
    # the first passage follows the chat template's turn header; keep only the numbered run 1, 2, 3...
    first = next((i for i, m in enumerate(matches) if m.group(1) == "1"), None)
    if first is None:
        return [], question
    run = matches[first:]
    passages = []
    for i, m in enumerate(run):
        stop = run[i + 1].start() if i + 1 < len(run) else len(body)
        passages.append(body[m.end() : stop].strip())
    return passages, question
