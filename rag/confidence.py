"""Does the knowledge base answer this question? A calibrated probability from retrieval signals.

Two signals, both cheap and both available for every query:
- `coverage`: the idf-weighted share of the question's topic terms found in the top BM25 passages (a
  question about "stock options" where no passage says "stock" scores low however close the embeddings
  are);
- `uncovered`: how much of the question's meaning lies in the words the passages lack, measured as
  1 - cos(question, question without those words). "oops I clicked a link in a sketchy email" loses
  little without "oops" and "sketchy"; "can I bring my dog to the Austin office" loses a lot without
  "dog". Zero when every topic term is covered. The shortened question is embedded in the same forward
  pass as the question itself (the passages come from BM25, which needs no embedding), so the signal
  costs ~1 ms, not a second model call.
A logistic regression over them, fit on labelled questions (the golden set), turns them into
P(answerable); the service refuses below a threshold. `dense_top` (the best cosine similarity) is
reported too but left out of the fit: on the golden set it adds noise, not separation (bench/RESULTS.md).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

FEATURES = ("coverage", "uncovered")


@dataclass(frozen=True)
class Calibration:
    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5
    features: tuple[str, ...] = FEATURES
    fitted_on: str = "default"

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.features):
            raise ValueError(f"{len(self.weights)} weights for {len(self.features)} features")

    def probability(self, features: Mapping[str, float]) -> float:
        z = self.bias + sum(w * features[name] for w, name in zip(self.weights, self.features, strict=True))
        return sigmoid(z)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """Read a saved calibration; ValueError when the file is unreadable or fitted on unknown features."""
        try:
            data = json.loads(path.read_text())
            features = tuple(str(f) for f in data.get("features", ("dense_top", "coverage")))
            calibration = cls(
                weights=tuple(float(w) for w in data["weights"]),
                bias=float(data["bias"]),
                threshold=float(data.get("threshold", 0.5)),
                features=features,
                fitted_on=str(data.get("fitted_on", "file")),
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path} is not a readable calibration ({exc})") from exc
        unknown = set(features) - set(KNOWN_FEATURES)
        if unknown:
            raise ValueError(f"{path} uses features this version does not compute: {sorted(unknown)}")
        return calibration


KNOWN_FEATURES = ("dense_top", *FEATURES)

# Fit by `python bench/retrieval.py` on examples/acme-handbook/golden.jsonl with the bundled MiniLM
# (see bench/RESULTS.md); `kbloop index calibrate` refits it for another corpus or embedder.
DEFAULT_CALIBRATION = Calibration(weights=(5.218, -2.439), bias=-3.379, threshold=0.263, fitted_on="default")


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


_WORD = re.compile(r"\w+(?:[-'’]\w+)*")


def without_terms(text: str, missing: Collection[str], terms_of: Callable[[str], Sequence[str]]) -> str:
    """`text` with every word dropped whose index terms include one of `missing` (the uncovered terms)."""
    kept = [w for w in _WORD.findall(text) if not set(terms_of(w)) & set(missing)]
    return " ".join(kept)


def threshold_for_false_refusals(answerable_probabilities: Sequence[float], max_rate: float) -> float:
    """The highest threshold that refuses at most `max_rate` of these answerable questions.

    A question is refused when its probability is below the threshold, so with the probabilities sorted
    and m = floor(max_rate * n) allowed refusals, the threshold is the (m+1)-th smallest probability.
    """
    if not 0.0 <= max_rate < 1.0:
        raise ValueError(f"max_rate must be in [0, 1), got {max_rate}")
    ordered = sorted(answerable_probabilities)
    if not ordered:
        raise ValueError("no answerable questions to set a threshold on")
    allowed = math.floor(max_rate * len(ordered) + 1e-9)
    return ordered[allowed]


def fit_calibration(
    rows: Sequence[Mapping[str, float]],
    answerable: Sequence[bool],
    threshold: float | None = None,
    max_false_refusals: float = 0.10,
    label: str = "",
    features: Sequence[str] = FEATURES,
) -> Calibration:
    """Logistic regression (scikit-learn) of answerable on the named features of each row.

    Without an explicit `threshold`, the threshold is the highest one that refuses at most
    `max_false_refusals` of the answerable questions it was fitted on: wrongly refusing an employee
    costs more than letting the generator say the passages don't cover it.
    """
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:
        from rag.errors import missing_extra

        raise missing_extra("scikit-learn") from exc
    if len(rows) != len(answerable):
        raise ValueError(f"{len(rows)} feature rows for {len(answerable)} labels")
    if len(set(answerable)) < 2:
        raise ValueError("calibration needs both answerable and unanswerable questions")
    model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=1000)
    model.fit([[row[f] for f in features] for row in rows], [int(a) for a in answerable])
    calibration = Calibration(
        weights=tuple(float(w) for w in model.coef_[0]),
        bias=float(model.intercept_[0]),
        features=tuple(features),
        fitted_on=label,
    )
    if threshold is None:
        positives = [calibration.probability(row) for row, a in zip(rows, answerable, strict=True) if a]
        threshold = threshold_for_false_refusals(positives, max_false_refusals)
    return replace(calibration, threshold=threshold)
