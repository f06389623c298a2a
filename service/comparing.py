"""Side-by-side comparisons: one question, two anonymous answers, the positions recorded.

The two answers come from two different model versions when a challenger (`canary`, else `candidate`)
is aliased; otherwise from the champion sampled twice at different temperatures. Which one is on the
left is drawn at random for every pair, so position bias can be measured and cancels out. The API
(`POST /api/compare`) and the web UI both call `create_pair`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from dataclasses import dataclass

from feedback.comparisons import Comparison
from service.answering import Answer, Answerer, ChatInput, Delta
from service.auth import Identity
from service.errors import InvalidRequest

CHAMPION_TEMPERATURE = 0.3
SECOND_SAMPLE_TEMPERATURE = 0.9


@dataclass(frozen=True)
class Pair:
    comparison: Comparison
    left: Answer
    right: Answer


def contenders(answerer: Answerer) -> list[tuple[str, float]]:
    """(model alias or version, temperature) of the two sides, in a fixed order before shuffling."""
    aliases = answerer.runtime.models.aliases()
    champion = aliases.get("champion", "champion")
    challenger = aliases.get("canary") or aliases.get("candidate")
    if challenger and challenger != champion:
        return [(champion, CHAMPION_TEMPERATURE), (challenger, CHAMPION_TEMPERATURE)]
    return [(champion, CHAMPION_TEMPERATURE), (champion, SECOND_SAMPLE_TEMPERATURE)]


async def _complete(answerer: Answerer, request: ChatInput, identity: Identity) -> Answer:
    async for event in answerer.answer(request, identity):
        if not isinstance(event, Delta):
            return event
    raise RuntimeError("the answer ended without a result")


async def create_pair(
    answerer: Answerer,
    identity: Identity,
    messages: list[dict[str, str]],
    *,
    max_tokens: int | None = None,
    idempotency_key: str | None = None,
    rng: random.Random | None = None,
) -> Pair:
    """Answer the question twice (concurrently: the engine batches them), shuffle, record the pair."""
    conversation_id = uuid.uuid4().hex
    requests = [
        ChatInput(
            messages=messages,
            model=model,
            temperature=temperature,
            max_tokens=max_tokens,
            conversation_id=conversation_id,
        )
        for model, temperature in contenders(answerer)
    ]
    first, second = await asyncio.gather(*(_complete(answerer, r, identity) for r in requests))
    if first.refused or second.refused:
        raise InvalidRequest("the knowledge base does not cover this question: there is nothing to compare")
    left, right = (first, second) if (rng or random).random() < 0.5 else (second, first)
    comparison = await asyncio.to_thread(
        answerer.store.create_comparison,
        identity.user,
        left.answer_id,
        right.answer_id,
        idempotency_key=idempotency_key,
    )
    return Pair(comparison, left, right)
