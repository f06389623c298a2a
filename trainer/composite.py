"""The composite reward: the learned reward model beside the verifiable checks, weighed by the employees.

    reward(prompt, response) = w_learned · (rm(prompt, response) − mean) / std + Σ_k w_k · check_k

The weights are not set by hand: they are the Bradley–Terry fit of the employees' choices on the feature
differences of (chosen − rejected), a logistic regression without intercept (`fit_weights`), with
k-fold cross-validation for the agreement it reaches on pairs it did not see. The manifest records the
weights and each component's own agreement with the held-out choices, so an operator sees which judge
the employees' preferences follow. Pure numpy + scikit-learn over feature matrices; the scoring of
responses happens elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from trainer.verifiable import COMPONENTS, features

LEARNED = "learned"
NAMES = (LEARNED, *COMPONENTS)


def agreement(diffs: np.ndarray, weights: np.ndarray) -> float:  # diffs: (pairs, k), weights: (k,)
    """Share of pairs whose chosen side the weighted features score higher (a tie counts half)."""
    if len(diffs) == 0:
        return float("nan")
    margin = diffs @ weights
    return float(((margin > 0).sum() + 0.5 * (margin == 0).sum()) / len(diffs))


def fit_weights(diffs: np.ndarray, c: float = 1.0) -> np.ndarray:  # (pairs, k) -> (k,)
    """Bradley–Terry weights: logistic regression of "chosen wins" on (chosen − rejected), both
    orientations of each pair so no intercept is needed, L2-regularised with strength 1/c."""
    from sklearn.linear_model import LogisticRegression

    if len(diffs) == 0:
        raise ValueError("no pairs to fit the reward weights on")
    x = np.concatenate([diffs, -diffs])
    y = np.concatenate([np.ones(len(diffs)), np.zeros(len(diffs))])
    if not np.any(x):
        return np.zeros(diffs.shape[1])
    model = LogisticRegression(C=c, fit_intercept=False, max_iter=1000)
    model.fit(x, y)
    return np.asarray(model.coef_[0], dtype=float)


def cross_validated(diffs: np.ndarray, folds: int = 5, seed: int = 0, c: float = 1.0) -> float:
    """Agreement of `fit_weights` on the folds it was not fitted on (pairs in a seeded order)."""
    n = len(diffs)
    if n < 2:
        return float("nan")
    folds = max(2, min(folds, n))
    order = np.random.default_rng(seed).permutation(n)
    right = 0.0
    for k in range(folds):
        test = order[k::folds]
        train = np.setdiff1d(order, test)
        weights = fit_weights(diffs[train], c)
        right += agreement(diffs[test], weights) * len(test)
    return right / n


@dataclass
class CompositeReward:
    """Fitted weights by component name, the learned model's normalisation, and the evidence."""

    weights: dict[str, float]
    mean: float = 0.0
    std: float = 1.0
    report: dict[str, Any] = field(default_factory=dict)

    def combine(self, learned: Sequence[float], checks: Sequence[Sequence[float]]) -> list[float]:
        """Composite rewards from raw learned scores and check rows (in `COMPONENTS` order)."""
        w = np.array([self.weights.get(name, 0.0) for name in COMPONENTS])
        z = (np.asarray(learned, dtype=float) - self.mean) / max(self.std, 1e-6)
        rows = np.asarray(checks, dtype=float).reshape(len(z), len(COMPONENTS))
        return (self.weights.get(LEARNED, 0.0) * z + rows @ w).tolist()

    def to_json(self) -> dict[str, Any]:
        return {"weights": self.weights, "mean": self.mean, "std": self.std, "report": self.report}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CompositeReward:
        return cls(
            dict(data["weights"]), float(data["mean"]), float(data["std"]), dict(data.get("report", {}))
        )


def feature_rows(
    learned: Sequence[float], prompts: Sequence[str], responses: Sequence[str], mean: float, std: float
) -> np.ndarray:  # (n, 1 + len(COMPONENTS))
    z = (np.asarray(learned, dtype=float) - mean) / max(std, 1e-6)
    checks = np.array([features(p, r) for p, r in zip(prompts, responses, strict=True)], dtype=float)
    return np.column_stack([z, checks.reshape(len(z), len(COMPONENTS))])


def fit_composite(
    train: tuple[np.ndarray, np.ndarray],
    heldout: tuple[np.ndarray, np.ndarray] | None = None,
    *,
    mean: float = 0.0,
    std: float = 1.0,
    folds: int = 5,
    seed: int = 0,
) -> CompositeReward:
    """Fit on the (chosen, rejected) feature rows of the training pairs; report the cross-validated
    agreement, and on `heldout` pairs the agreement of the composite and of each component alone."""
    chosen, rejected = train
    diffs = chosen - rejected
    weights = fit_weights(diffs)
    report: dict[str, Any] = {"pairs": len(diffs), "cv_agreement": cross_validated(diffs, folds, seed)}
    if heldout is not None and len(heldout[0]):
        held = heldout[0] - heldout[1]
        report["heldout_pairs"] = len(held)
        report["heldout_agreement"] = agreement(held, weights)
        report["component_agreement"] = {
            name: agreement(held[:, [i]], np.ones(1)) for i, name in enumerate(NAMES)
        }
    return CompositeReward(dict(zip(NAMES, weights.tolist(), strict=True)), mean, std, report)


def composite_scorer(
    composite: CompositeReward, learned: Callable[[Sequence[str], Sequence[str]], list[float]]
) -> Callable[[Sequence[str], Sequence[str]], list[float]]:
    """(prompts, responses) -> composite rewards, from a learned scorer and the fitted weights."""

    def score(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        raw = learned(prompts, responses)
        checks = [features(p, r) for p, r in zip(prompts, responses, strict=True)]
        return composite.combine(raw, checks)

    return score


def fit_on_pairs(
    learned: Callable[[Sequence[str], Sequence[str]], list[float]],
    train_pairs: Sequence[Any],
    heldout_pairs: Sequence[Any],
    *,
    mean: float,
    std: float,
    sample: int = 64,
    seed: int = 0,
) -> CompositeReward:
    """Score a seeded sample of the training pairs (and as many held-out pairs) with the learned model
    and the checks, and fit the weights on them (trainer.examples.PreferencePair: prompt, chosen, rejected).
    The learned model is the slow part: `sample` bounds its passes."""
    import random

    def rows(pairs: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        prompts = [p.prompt for p in pairs]
        chosen = feature_rows(learned(prompts, [p.chosen for p in pairs]), prompts, [p.chosen for p in pairs],
                              mean, std)  # fmt: skip
        rejected = feature_rows(learned(prompts, [p.rejected for p in pairs]), prompts,
                                [p.rejected for p in pairs], mean, std)  # fmt: skip
        return chosen, rejected

    rng = random.Random(seed)
    train = rng.sample(list(train_pairs), min(sample, len(train_pairs)))
    held = rng.sample(list(heldout_pairs), min(sample, len(heldout_pairs)))
    if not train:
        raise ValueError("no training pairs to fit the reward weights on")
    return fit_composite(rows(train), rows(held) if held else None, mean=mean, std=std, seed=seed)
