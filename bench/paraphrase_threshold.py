"""The MiniLM cosine at which two questions count as paraphrases (trainer.hygiene.PARAPHRASE_COSINE).

    python bench/paraphrase_threshold.py

Embeds the golden questions (examples/acme-handbook/golden.jsonl) and paraphrases of 17 of them written
for this measurement with the bundled all-MiniLM-L6-v2, and prints: the cosine of each paraphrase to its
original, the largest cosine between two distinct golden questions, the nearest golden question of each
question in bench/questions/extra-heldout.jsonl, and for a few thresholds how many paraphrases would be
joined and how many distinct questions would wrongly be.
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PARAPHRASES = {
    "a-001": "which office is HR in, in boston",
    "a-005": "until when can I correct an error in my timesheet before I get paid?",
    "a-009": "self-review deadline this year?",
    "a-013": "senior software engineer pay band austin",
    "a-017": "how early should I request a laptop for a new team member?",
    "a-021": "boston fire alarm: where is the assembly point?",
    "a-025": "what's required to take a prototype abroad to a trade fair?",
    "a-029": "are stock options part of the offer for new employees?",
    "a-033": "is there a mobile phone allowance for new starters each month?",
    "b-003": "what is the laptop refresh cycle for engineers",
    "b-007": "IT helpdesk phone extension?",
    "b-011": "what's the biggest attachment outlook allows",
    "b-015": "who must be notified of a critical security incident, and how fast?",
    "b-019": "daily allowance for travel to munich",
    "b-023": "number of reviewers needed for a safety firmware pull request",
    "b-027": "deadline for the postmortem draft?",
    "b-031": "is there a phone stipend for people on call?",
}


def questions(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(row["id"], row["question"]) for row in rows]


def main() -> None:
    from rag.embedding import Embedder

    embedder = Embedder()

    def embed(texts: list[str]) -> np.ndarray:
        vectors = np.asarray(embedder.encode(texts), dtype=np.float64)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    golden = dict(questions(REPO / "examples" / "acme-handbook" / "golden.jsonl"))
    extra = [q for _, q in questions(REPO / "bench" / "questions" / "extra-heldout.jsonl")]
    ids = list(golden)
    g = embed([golden[i] for i in ids])
    p = embed(list(PARAPHRASES.values()))
    positive = np.array([float(p[k] @ g[ids.index(i)]) for k, i in enumerate(PARAPHRASES)])
    sims = g @ g.T
    negative = np.array([float(sims[a, b]) for a, b in itertools.combinations(range(len(ids)), 2)])
    nearest = (embed(extra) @ g.T).max(axis=1)
    print(f"paraphrases: {len(positive)}, cosine to the original min {positive.min():.3f} "
          f"median {np.median(positive):.3f}")  # fmt: skip
    p99 = np.percentile(negative, 99)
    print(f"distinct golden pairs: {len(negative)}, max {negative.max():.3f}, p99 {p99:.3f}")
    print(f"extra-heldout to the nearest golden: max {nearest.max():.3f}, median {np.median(nearest):.3f}")
    for threshold in (0.65, 0.7, 0.72, 0.75, 0.8, 0.85):
        print(
            f"threshold {threshold:.2f}: "
            f"paraphrases joined {int((positive >= threshold).sum())}/{len(positive)}, "
            f"distinct golden pairs joined {int((negative >= threshold).sum())}, "
            f"extra-heldout joined to a golden question {int((nearest >= threshold).sum())}"
        )


if __name__ == "__main__":
    main()
