"""Does the knowledge base answer this question? A calibrated probability from retrieval signals.

Two signals, both cheap and both available for every query:
- `dense_top`: the best cosine similarity between the query and any passage;
- `coverage`: the idf-weighted share of the query's terms found in the top passages (a question about
  "stock options" where no passage says "stock" scores low however close the embeddings are).
A logistic regression over them, fit on labelled questions (the golden set), turns them into
P(answerable); the service refuses below a threshold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

FEATURES = ("dense_top", "coverage")


@dataclass(frozen=True)
class Calibration:
    weights: tuple[float, float]
    bias: float
    threshold: float = 0.5
    fitted_on: str = "default"

    def probability(self, features: Sequence[float]) -> float:
        z = self.bias + sum(w * x for w, x in zip(self.weights, features, strict=True))
        return sigmoid(z)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        data = json.loads(path.read_text())
        return cls(
            weights=(float(data["weights"][0]), float(data["weights"][1])),
            bias=float(data["bias"]),
            threshold=float(data.get("threshold", 0.5)),
            fitted_on=str(data.get("fitted_on", "file")),
        )


# Fit by `python bench/retrieval.py` on examples/acme-handbook/golden.jsonl with the bundled MiniLM
# (see bench/RESULTS.md); `kbloop index calibrate` refits it for another corpus or embedder.
DEFAULT_CALIBRATION = Calibration(weights=(14.0, 6.0), bias=-10.0, threshold=0.5, fitted_on="default")


def sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def term_coverage(
    query_terms: Sequence[str], passage_terms: Collection[str], idf: Callable[[str], float]
) -> float:
    """Σ idf(t) over query terms found in the passages / Σ idf(t) over all query terms (0 if none)."""
    unique = list(dict.fromkeys(query_terms))
    total = sum(idf(t) for t in unique)
    if total <= 0:
        return 0.0
    return sum(idf(t) for t in unique if t in passage_terms) / total


def fit_calibration(
    features: Sequence[Sequence[float]], answerable: Sequence[bool], threshold: float = 0.5, label: str = ""
) -> Calibration:
    """Logistic regression (scikit-learn) of answerable on the features."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        from rag.errors import missing_extra

        raise missing_extra("scikit-learn") from exc
    if len(set(answerable)) < 2:
        raise ValueError("calibration needs both answerable and unanswerable questions")
    model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=1000)
    model.fit([list(f) for f in features], [int(a) for a in answerable])
    w = model.coef_[0]
    return Calibration(
        weights=(float(w[0]), float(w[1])),
        bias=float(model.intercept_[0]),
        threshold=threshold,
        fitted_on=label,
    )
