"""Simulated employees for `kbloop simulate`: a hidden preference, the employees who vote by it, and the
questions they ask.

- `Preference`: what the employees like, as a score of an answer (text and the API's citations) against
  the golden item it answers. The trainer never sees it: only the votes and choices it causes.
  `ConciseCitedPreference` (the default) likes concise answers that cite the right source and state the
  reference's key facts (numbers, addresses, names); `ThoroughPreference` is the opposite taste.
  `PREFERENCES` names them for the CLI; any object with the same attributes plugs in.
- `Employee`: a bearer token, a user name and a personal bias; votes up above the preference's bar and
  picks the better of two answers, with seeded noise.
- `QuestionBank`: the golden set's answerable questions split by question into train (asked, voted on,
  compared) and held-out (only for measuring the win rate).
"""

from __future__ import annotations

import random
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trainer.errors import DataError
from trainer.prompts import GoldenItem

# -- hidden preferences ---------------------------------------------------------------------------


class Preference(Protocol):
    """What the simulated employees like; the trainer never sees it, only their votes and choices."""

    name: str
    thumbs_up_above: float  # a thumbs up when the (noisy) score is above this
    both_bad_below: float  # side by side, both answers are bad when both score below this
    tie_within: float  # side by side, a tie when the scores differ by at most this

    def score(
        self, question: str, answer: str, citations: Sequence[dict[str, Any]], item: GoldenItem
    ) -> float: ...

    def reasons(
        self, question: str, answer: str, citations: Sequence[dict[str, Any]], item: GoldenItem
    ) -> list[str]:
        """The chips a thumbs down carries (feedback.votes.Reason values)."""
        ...

    def correction(self, item: GoldenItem, passages: Sequence[dict[str, Any]]) -> str:
        """The answer as an employee with this taste would rewrite it (an SFT demonstration)."""
        ...


def cited_reference(item: GoldenItem, passages: Sequence[dict[str, Any]]) -> str:
    """The reference answer with a [n] marker after its first sentence, n the first shown passage from
    one of its sources (no marker when none was shown): what an employee who knows the answer and saw
    the passages writes as a correction."""
    n = next((p["n"] for p in passages if p.get("source") in item.sources), None)
    if n is None:
        return item.answer
    first, *rest = _SENTENCE.split(item.answer.strip(), maxsplit=1)
    end = len(first.rstrip(".!?;:"))
    return " ".join([f"{first[:end]} [{n}]{first[end:]}", *rest])


_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z]+\b")
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+")
_CITATION_MARK = re.compile(r"\[\d{1,2}\]")
_COMMON = frozenset({"acme", "you", "your", "yes", "the", "if", "in", "it", "for", "and", "on", "at"})


def key_facts(text: str) -> set[str]:
    """The checkable facts of a reference answer, lowercased: e-mail addresses, numbers, and named terms
    (capitalised words that do not start a sentence: PaySphere, Fidelity, Munich)."""
    facts = {m.lower() for m in _EMAIL.findall(text)}
    without_emails = _EMAIL.sub(" ", text)
    facts |= set(_NUMBER.findall(without_emails))
    for sentence in _SENTENCE.split(without_emails):
        words = _CAPITALISED.findall(sentence)
        if words and sentence.startswith(words[0]):  # a sentence's first word is capitalised anyway
            words = words[1:]
        facts |= {w.lower() for w in words if w.lower() not in _COMMON}
    return facts


def fact_recall(answer: str, reference: str) -> float:
    """Share of the reference's key facts the answer states (whole words, any case)."""
    facts = key_facts(reference)
    if not facts:
        return 0.0
    text = answer.lower()
    found = sum(1 for f in facts if _mentions(text, f))
    return found / len(facts)


def _mentions(text: str, fact: str) -> bool:
    """Whole words for names ("Munich", not "Munichs"); digits not glued to more digits for numbers
    ("4" in "4th floor", not in "410")."""
    if fact[0].isdigit():
        return re.search(rf"(?<![\d.,:]){re.escape(fact)}(?![\d]|[.,:]\d)", text) is not None
    return re.search(rf"(?<![\w]){re.escape(fact)}(?![\w])", text) is not None


@dataclass
class ConciseCitedPreference:
    """Concise answers that cite the right source and state the reference's key facts.

    score = source·[a citation names a golden source] + facts·(share of key facts stated)
            − uncited·[no [n] mark in the text] − length·(words beyond `concise_words`)
    The facts weigh most: an answer that cites the right passage but says nothing useful ("[1] The
    answer is: [2]") must not get a thumbs up. With SmolLM2-135M's answers (48 tokens) the scores
    range from about −0.5 to 2; the bar of 1.2 takes the right source and ~10% of the facts, cited."""

    name: str = "concise-cited"
    source: float = 1.0
    facts: float = 2.0
    uncited: float = 0.5
    length: float = 0.02
    concise_words: int = 60
    thumbs_up_above: float = 1.2
    both_bad_below: float = 0.3
    tie_within: float = 0.05

    def score(
        self, question: str, answer: str, citations: Sequence[dict[str, Any]], item: GoldenItem
    ) -> float:
        right = any(c.get("source") in item.sources for c in citations)
        words = len(answer.split())
        return (
            self.source * right
            + self.facts * fact_recall(answer, item.answer)
            - self.uncited * (not _CITATION_MARK.search(answer))
            - self.length * max(0, words - self.concise_words)
        )

    def reasons(
        self, question: str, answer: str, citations: Sequence[dict[str, Any]], item: GoldenItem
    ) -> list[str]:
        out = []
        if not any(c.get("source") in item.sources for c in citations):
            out.append("wrong_source")
        if fact_recall(answer, item.answer) < 0.34:
            out.append("incomplete")
        if len(answer.split()) > self.concise_words:
            out.append("too_long")
        return out or ["not_helpful"]

    def correction(self, item: GoldenItem, passages: Sequence[dict[str, Any]]) -> str:
        return cited_reference(item, passages)


@dataclass
class ThoroughPreference:
    """The opposite taste, to check the loop follows whoever votes: long answers full of facts, with no
    regard for citations. score = facts·(share of key facts) + per_word·min(words, cap)."""

    name: str = "thorough"
    facts: float = 1.0
    per_word: float = 0.01
    cap: int = 120
    thumbs_up_above: float = 0.8
    both_bad_below: float = 0.2
    tie_within: float = 0.05

    def score(
        self, question: str, answer: str, citations: Sequence[dict[str, Any]], item: GoldenItem
    ) -> float:
        words = len(answer.split())
        return self.facts * fact_recall(answer, item.answer) + self.per_word * min(words, self.cap)

    def reasons(
        self, question: str, answer: str, citations: Sequence[dict[str, Any]], item: GoldenItem
    ) -> list[str]:
        return ["incomplete"]

    def correction(self, item: GoldenItem, passages: Sequence[dict[str, Any]]) -> str:
        return item.answer  # all the facts; this taste does not ask for citations


PREFERENCES: dict[str, Callable[[], Preference]] = {
    "concise-cited": ConciseCitedPreference,
    "thorough": ThoroughPreference,
}


# -- simulated employees and questions ------------------------------------------------------------


@dataclass(frozen=True)
class Employee:
    user: str
    token: str
    bias: float  # added to the preference's thumbs-up bar: some employees are harder to please

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def thumbs(self, pref: Preference, score: float, rng: random.Random, noise: float) -> str:
        return "up" if score + rng.gauss(0.0, noise) > pref.thumbs_up_above + self.bias else "down"

    def choose(
        self, pref: Preference, a: float, b: float, rng: random.Random, noise: float, same: bool = False
    ) -> str:
        """`A` (the first is better), `B`, `tie` or `both_bad`, as the API takes them. Two answers with
        the `same` text are judged without noise: a tie, or both bad."""
        if same:
            noise = 0.0
        a, b = a + rng.gauss(0.0, noise), b + rng.gauss(0.0, noise)
        if max(a, b) < pref.both_bad_below:
            return "both_bad"
        if abs(a - b) <= pref.tie_within:
            return "tie"
        return "A" if a > b else "B"


def employees(count: int, seed: int, noise: float) -> list[Employee]:
    return [
        Employee(f"sim-{k + 1:02d}", secrets.token_hex(16), random.Random(f"{seed}/user/{k}").gauss(0, noise))
        for k in range(count)
    ]


@dataclass(frozen=True)
class QuestionBank:
    train: tuple[GoldenItem, ...]  # asked, voted on and compared every round
    heldout: tuple[GoldenItem, ...]  # only ever answered for the win-rate measurement

    @staticmethod
    def usable(items: Sequence[GoldenItem]) -> tuple[GoldenItem, ...]:
        """The answerable questions with sources, one per question text, by id."""
        return tuple(
            sorted({i.question: i for i in items if i.answerable and i.sources}.values(), key=lambda i: i.id)
        )

    @classmethod
    def split(cls, items: Sequence[GoldenItem], train: int, heldout: int, seed: int) -> QuestionBank:
        """Answerable questions with sources, shuffled with `seed`, split by question (0 train = the rest)."""
        usable = list(cls.usable(items))
        random.Random(seed).shuffle(usable)
        if heldout >= len(usable):
            raise DataError(f"{heldout} held-out questions leave none to train on ({len(usable)} usable)")
        rest = usable[heldout:]
        return cls(tuple(rest[:train] if train else rest), tuple(usable[:heldout]))
