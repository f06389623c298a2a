"""Evaluate a policy version on the golden set, the way the service would answer it.

For each golden question the prompt is rendered as the service renders it (trainer/prompts.py); the
policy (base + optional LoRA adapter) answers as served (temperature 0.3, fixed seed). Reported:
- `similarity`: cosine similarity (0..1, clipped at 0) between the answer and the human answer, with the
  embedder the index uses (all-MiniLM-L6-v2 by default), mean over answerable questions;
- `citation_correct`: share of answerable questions whose answer cites a passage from a golden source
  (explicit `[n]`, or the service's attribution fallback for uncited answers);
- `refusal_rate_unanswerable`: share of unanswerable questions refused, by retrieval (the service would
  not call the model) or in words (the answer says the knowledge base does not cover it);
- `length_tokens`: mean answer length; `reward`: mean reward-model score when a scorer is given.
The per-question answers are kept, so a report can show them beside the champion's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.prompts import GoldenPrompt

EVAL_TEMPERATURE = 0.3  # the service's default (service/api/chat.py)

REFUSAL_PATTERNS = re.compile(
    r"does not cover|doesn't cover|not covered|no information|not (?:in|mentioned in) the (?:passages|"
    r"knowledge base|handbook)|cannot find|can't find|don't know|do not know|not able to find",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class QuestionResult:
    id: str
    question: str
    answer: str
    reference: str
    answerable: bool
    refused_by_retrieval: bool
    similarity: float | None
    cites_golden_source: bool | None
    refused_in_words: bool
    tokens: int
    reward: float | None = None


@dataclass
class PolicyReport:
    similarity: float
    citation_correct: float
    refusal_rate_unanswerable: float
    length_tokens: float
    reward: float | None
    questions: list[QuestionResult] = field(default_factory=list)

    def summary(self) -> dict[str, float | None]:
        return {
            "similarity": self.similarity,
            "citation_correct": self.citation_correct,
            "refusal_rate_unanswerable": self.refusal_rate_unanswerable,
            "length_tokens": self.length_tokens,
            "reward": self.reward,
            "questions": float(len(self.questions)),
        }


def says_refusal(answer: str) -> bool:
    return bool(REFUSAL_PATTERNS.search(answer))


def cites_source(answer: str, prompt: GoldenPrompt) -> bool:
    from rag.prompting import attributed_numbers, cited_numbers

    passages = prompt.rendered.passages
    numbers = cited_numbers(answer, len(passages)) or attributed_numbers(answer, passages)
    sources = set(prompt.item.sources)
    return any(passages[n - 1].source in sources for n in numbers)


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    temperature: float = EVAL_TEMPERATURE,
    seed: int = 0,
    progress_dir: Path | None = None,
    phase: str = "golden answers",
) -> list[tuple[str, int]]:
    """Answers (text, token count) to rendered prompts, in batches (left padding), sampled as the service
    samples by default (temperature 0.3) from a fixed seed, so two versions are compared on equal terms.
    Greedy decoding is not used: SmolLM2-135M answers many golden prompts greedily with a bare list of
    citation markers ("1. [1]\n2. [2]"), which is not what employees are served. Progress (a bar, and
    `progress_dir`/progress.json when given) counts answers."""
    import torch

    from trainer.progress import Progress
    from trainer.tokens import pad_left

    out: list[tuple[str, int]] = []
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    bar = Progress(phase, len(prompts), folder=progress_dir, unit="answer")
    for start in range(0, len(prompts), batch_size):
        chunk = [
            tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts[start : start + batch_size]
        ]
        ids, attention = pad_left(chunk, pad)
        torch.manual_seed(seed + start)
        with torch.no_grad():
            generated = model.generate(
                input_ids=ids.to(device),
                attention_mask=attention.to(device),
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=1.0,
                top_k=0,
                max_new_tokens=max_new_tokens,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=pad,
            )
        for row in range(len(chunk)):
            response = generated[row, ids.shape[1] :].tolist()
            if tokenizer.eos_token_id in response:
                response = response[: response.index(tokenizer.eos_token_id)]
            out.append((tokenizer.decode(response, skip_special_tokens=True).strip(), len(response)))
        bar.update(len(chunk))
    bar.close()
    return out


def evaluate_answers(
    prompts: Sequence[GoldenPrompt],
    answers: Sequence[tuple[str, int]],
    embed: Callable[[Sequence[str]], Any],
    reward: Callable[[Sequence[str], Sequence[str]], list[float]] | None = None,
) -> PolicyReport:
    """Score answers (one per prompt, "" for questions the retrieval refused) against the golden set."""
    import numpy as np

    rewards: list[float | None] = [None] * len(prompts)
    if reward is not None:
        scored = [i for i, p in enumerate(prompts) if not p.rendered.refused]
        values = reward([prompts[i].rendered.prompt for i in scored], [answers[i][0] for i in scored])
        for i, value in zip(scored, values, strict=True):
            rewards[i] = value
    answerable = [i for i, p in enumerate(prompts) if p.item.answerable]
    sims: dict[int, float] = {}
    if answerable:
        a = np.asarray(embed([answers[i][0] or " " for i in answerable]))
        b = np.asarray(embed([prompts[i].item.answer for i in answerable]))
        cos = (a * b).sum(axis=1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
        sims = {i: float(max(0.0, c)) for i, c in zip(answerable, cos, strict=True)}
    results = []
    for i, (prompt, (answer, tokens)) in enumerate(zip(prompts, answers, strict=True)):
        refused = prompt.rendered.refused
        results.append(
            QuestionResult(
                id=prompt.item.id,
                question=prompt.item.question,
                answer=answer,
                reference=prompt.item.answer,
                answerable=prompt.item.answerable,
                refused_by_retrieval=refused,
                similarity=sims.get(i),
                cites_golden_source=(not refused and cites_source(answer, prompt))
                if prompt.item.answerable
                else None,
                refused_in_words=says_refusal(answer),
                tokens=tokens,
                reward=rewards[i],
            )
        )
    good = [r for r in results if r.answerable]
    bad = [r for r in results if not r.answerable]
    generated = [r for r in results if not r.refused_by_retrieval]
    scored_rewards = [r.reward for r in results if r.reward is not None]
    return PolicyReport(
        similarity=_mean([r.similarity or 0.0 for r in good]),
        citation_correct=_mean([1.0 if r.cites_golden_source else 0.0 for r in good]),
        refusal_rate_unanswerable=_mean(
            [1.0 if r.refused_by_retrieval or r.refused_in_words else 0.0 for r in bad]
        ),
        length_tokens=_mean([float(r.tokens) for r in generated]),
        reward=_mean(scored_rewards) if scored_rewards else None,
        questions=results,
    )


def evaluate_policy(
    base: str,
    adapter: Path | None,
    prompts: Sequence[GoldenPrompt],
    embed: Callable[[Sequence[str]], Any],
    *,
    reward: Callable[[Sequence[str], Sequence[str]], list[float]] | None = None,
    max_new_tokens: int = 96,
    device: str = "auto",
    batch_size: int = 8,
    progress_dir: Path | None = None,
    phase: str = "golden answers",
) -> PolicyReport:
    """Load base (+ adapter), answer every golden prompt the retrieval would not refuse, score it."""
    from registry.loading import load_policy

    model, tokenizer = load_policy(base, adapter, device)
    to_answer = [i for i, p in enumerate(prompts) if not p.rendered.refused]
    generated = generate_answers(
        model,
        tokenizer,
        [prompts[i].rendered.prompt for i in to_answer],
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        progress_dir=progress_dir,
        phase=phase,
    )
    answers: list[tuple[str, int]] = [("", 0)] * len(prompts)
    for i, answer in zip(to_answer, generated, strict=True):
        answers[i] = answer
    del model
    return evaluate_answers(prompts, answers, embed, reward)


def answer_prompts(
    base: str,
    adapter: Path | None,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 96,
    device: str = "auto",
    progress_dir: Path | None = None,
    phase: str = "held-out answers",
) -> list[str]:
    """Answers of a version (sampled as served, fixed seed) to rendered prompts, e.g. held-out logged ones."""
    from registry.loading import load_policy

    model, tokenizer = load_policy(base, adapter, device)
    answers = generate_answers(
        model, tokenizer, prompts, max_new_tokens=max_new_tokens, progress_dir=progress_dir, phase=phase
    )
    return [text for text, _ in answers]


def compare_reports(candidate: PolicyReport, champion: PolicyReport) -> dict[str, Any]:
    """Candidate vs champion: the deltas, length drift and the reward-hacking check (reward up while
    golden similarity goes down means the policy learned to please the reward model, not the users)."""
    from registry.gate import reward_win_rate
    from trainer.metrics import length_drift

    drift = length_drift(
        [r.tokens for r in candidate.questions if not r.refused_by_retrieval],
        [r.tokens for r in champion.questions if not r.refused_by_retrieval],
    )
    delta_reward = (
        candidate.reward - champion.reward
        if candidate.reward is not None and champion.reward is not None
        else None
    )
    delta_sim = candidate.similarity - champion.similarity
    return {
        "candidate": candidate.summary(),
        "champion": champion.summary(),
        "delta_similarity": delta_sim,
        "delta_reward": delta_reward,
        "length_drift": drift,
        "reward_win_rate": reward_win_rate(
            [r.reward for r in candidate.questions], [r.reward for r in champion.questions]
        ),
        "reward_hacking_suspected": bool(delta_reward is not None and delta_reward > 0 and delta_sim < -0.02),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")
