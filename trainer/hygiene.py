"""Hygiene: what makes examples fit to learn from, each a pure function usable on its own.

- `dedupe`: identical examples once (contradicting ones are all kept, and counted);
- `cap_per_user`: at most so many examples per user, a seeded draw, so a few prolific raters do not
  speak for everyone;
- `balance_positions`: weights that cancel the raters' left/right position bias in pairs;
- `split_by_prompt` / `heldout_prompt_ids`: the held-out split, a stable function of the question
  (its prompt_id, and with an embedder its paraphrases: `paraphrase_groups`), the same in every round.

trainer.feedback_data applies the first three to what it reads from the store; the split is left to
the caller.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import replace
from typing import Any, Protocol

from trainer.examples import Demonstration, Example, Message, PreferencePair, ThumbExample, Tie, prompt_key


def _frozen(messages: Sequence[Message] | None) -> Hashable:
    return None if messages is None else tuple(tuple(sorted(m.items())) for m in messages)


def _keys(item: PreferencePair | Tie | ThumbExample | Demonstration) -> tuple[Hashable, Hashable | None]:
    """(what makes two examples the same, what the example that contradicts this one would have)."""
    if isinstance(item, PreferencePair):
        asked = (item.prompt, _frozen(item.prompt_messages))
        return (*asked, item.chosen, item.rejected), (*asked, item.rejected, item.chosen)
    if isinstance(item, ThumbExample):
        asked = (item.prompt, _frozen(item.prompt_messages))
        return (*asked, item.completion, item.label), (*asked, item.completion, not item.label)
    if isinstance(item, Tie):
        other = "tie" if item.kind == "both_bad" else "both_bad"
        return (item.prompt, frozenset((item.a, item.b)), item.kind), (
            item.prompt,
            frozenset((item.a, item.b)),
            other,
        )
    return (item.prompt, _frozen(item.messages), item.completion), None


def dedupe(items: Sequence[Example]) -> tuple[list[Example], dict[str, int]]:
    """Identical examples kept once (the first; users and positions aside): the same prompt, chosen and
    rejected; the same prompt, completion and label; the same tie of the same two answers; the same
    demonstration. Contradicting examples (the same pair in both directions, the same answer thumbed up
    and down, a tie and a both_bad of the same answers) are all kept: each is a real judgment, and
    people disagree. Returns the kept items in order and {"duplicates", "conflicts"} counts (a conflict:
    two kept examples contradicting each other)."""
    seen: set[Hashable] = set()
    kept: list[Example] = []
    for item in items:
        key, _ = _keys(item)
        if key not in seen:
            seen.add(key)
            kept.append(item)
    conflicts = sum(1 for item in kept if (opposite := _keys(item)[1]) is not None and opposite in seen)
    return kept, {"duplicates": len(items) - len(kept), "conflicts": conflicts // 2}


def cap_per_user(items: Sequence[Example], cap: int, seed: int) -> tuple[list[Example], dict[str, int]]:
    """At most `cap` items per user, so a few prolific raters do not speak for everyone. A user with
    more keeps a random `cap` of them, drawn from (seed, user) alone (another user's data does not change
    the draw); items without a user (JSONL, golden) are not capped. Returns the kept items in their
    order and {user: items dropped}."""
    if cap < 1:
        raise ValueError(f"cap must be at least 1, got {cap}")
    by_user: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if item.user_id is not None:
            by_user[item.user_id].append(i)
    drop: set[int] = set()
    dropped: dict[str, int] = {}
    for user in sorted(by_user):
        mine = by_user[user]
        if len(mine) > cap:
            keep = set(random.Random(f"{seed}\x1f{user}").sample(mine, cap))
            drop.update(i for i in mine if i not in keep)
            dropped[user] = len(mine) - cap
    return [item for i, item in enumerate(items) if i not in drop], dropped


def balance_positions(pairs: Sequence[PreferencePair]) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Weights that make pairs chosen on the left and on the right carry equal total weight, so a
    position bias of the raters (people pick the left answer more often) is not learnt as quality.
    Each weight is scaled by total / (2 × its side's total); pairs without a position keep theirs, and
    nothing changes unless both sides have pairs. The report has the counts and the left-win share
    before balancing (None without positioned pairs) and the two factors."""
    sides: dict[str, float] = {"left": 0.0, "right": 0.0}
    counts: Counter[str] = Counter()
    for p in pairs:
        if p.chosen_position is not None:
            sides[p.chosen_position] += p.weight
            counts[p.chosen_position] += 1
    positioned = counts["left"] + counts["right"]
    report: dict[str, Any] = {
        "left": counts["left"],
        "right": counts["right"],
        "unpositioned": len(pairs) - positioned,
        "left_win_share": counts["left"] / positioned if positioned else None,
        "factors": None,
    }
    if sides["left"] <= 0 or sides["right"] <= 0:
        return list(pairs), report
    total = sides["left"] + sides["right"]
    factors = {side: total / (2 * weight) for side, weight in sides.items()}
    report["factors"] = factors
    return [
        p if p.chosen_position is None else replace(p, weight=p.weight * factors[p.chosen_position])
        for p in pairs
    ], report


# MiniLM (the bundled all-MiniLM-L6-v2) cosine at or above which two questions are paraphrases. Measured
# by bench/paraphrase_threshold.py (2026-12-02): the 2,278 pairs of distinct golden questions reach 0.700
# at most (none at 0.72); 17 written paraphrases of golden questions have a median of 0.779 and 10 of 17
# are at or above 0.72; no question of bench/questions/extra-heldout.jsonl comes within 0.68 of a golden
# one. Paraphrases below it stay apart (separate hashes): a leak this threshold does not catch.
PARAPHRASE_COSINE = 0.72


def _unit(key: str) -> float:
    """A number in [0, 1) from `key` alone (a prompt_id: the question's normalised-text hash)."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:16], 16) / 2**64


def paraphrase_groups(
    questions: dict[str, str], embed: Any, threshold: float = PARAPHRASE_COSINE
) -> dict[str, str]:
    """prompt_id -> the id that decides its side: the smallest id of its group of near-duplicate
    questions (union-find over the pairs whose embeddings' cosine is >= `threshold`). `questions` maps
    prompt_id -> question text; `embed(texts)` returns one vector per text."""
    import numpy as np

    ids = sorted(questions)
    parent = {pid: pid for pid in ids}

    def root(pid: str) -> str:
        while parent[pid] != pid:
            parent[pid] = parent[parent[pid]]
            pid = parent[pid]
        return pid

    if len(ids) >= 2:
        vectors = np.asarray(embed([questions[pid] for pid in ids]), dtype=np.float64)
        vectors /= np.clip(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12, None)
        similar = np.argwhere(np.triu(vectors @ vectors.T, k=1) >= threshold)
        for a, b in similar.tolist():
            ra, rb = root(ids[a]), root(ids[b])
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)  # the group's root is its smallest id
    return {pid: root(pid) for pid in ids}


def split_by_prompt(
    items: Sequence[Example],
    heldout_fraction: float,
    *,
    embed: Any = None,
    threshold: float = PARAPHRASE_COSINE,
) -> tuple[list[Example], list[Example]]:
    """(train, held out): a stable function of the question, the same in every round and refresh and
    for every seed. Every example of a prompt_id is on the same side, and with `embed` (the bundled
    MiniLM's `encode`) so is every paraphrase (`paraphrase_groups`): a group is held out when the
    number drawn from its smallest prompt_id (a hash of the normalised question) is below
    `heldout_fraction`, so it stays held out as data grows, in the split of every kind of example.
    With few groups: at least one stays in train, and a fraction above 0 holds out at least one when
    there are two or more."""
    held = heldout_prompt_ids(items, heldout_fraction, embed=embed, threshold=threshold)
    return [i for i in items if i.prompt_id not in held], [i for i in items if i.prompt_id in held]


class Prompted(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def prompt_id(self) -> str: ...


def heldout_prompt_ids(
    items: Iterable[Prompted],
    heldout_fraction: float,
    *,
    embed: Any = None,
    threshold: float = PARAPHRASE_COSINE,
) -> set[str]:
    """The prompt_ids `split_by_prompt` holds out of `items` (anything with a prompt and a prompt_id:
    examples, logged prompts), so every kind of data can be split by one decision."""
    if not 0 <= heldout_fraction < 1:
        raise ValueError(f"heldout_fraction must be in [0, 1), got {heldout_fraction}")
    questions: dict[str, str] = {}
    for item in items:  # the question a prompt asks, as the prompt_id hashed it
        questions.setdefault(item.prompt_id, " ".join(prompt_key(item.prompt).split()))
    if embed is not None:
        group = paraphrase_groups(questions, embed, threshold)
    else:
        group = {pid: pid for pid in questions}
    draws = {g: _unit(g) for g in sorted(set(group.values()))}
    held = {g for g, u in draws.items() if u < heldout_fraction}
    if held and len(held) == len(draws):
        held.discard(max(draws, key=draws.__getitem__))
    if not held and heldout_fraction > 0 and len(draws) >= 2:
        held.add(min(draws, key=draws.__getitem__))
    return {pid for pid, g in group.items() if g in held}
