"""Statistics over feedback: thumbs-up rates, pairwise win rates, position bias, reason histograms.

Pure functions over plain lists (no database, no I/O): the Store fetches the rows and calls them.
Intervals are 95% ones unless told otherwise:
- a rate of successes among trials gets a Wilson score interval, which stays inside [0, 1] and keeps
  its coverage for small counts and rates near 0 or 1, where the normal (Wald) interval fails;
- a win rate counts a tie as half a win and half a loss; `both_bad` is neither (reported apart).
  Its interval is Wilson's with the fractional count, slightly wider than needed when there are ties
  (a tie is less uncertain than a coin flip between a win and a loss).
The Bradley–Terry ranking of model versions lives in feedback.ranking.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from feedback.comparisons import Choice
from feedback.votes import Reason

Z95 = 1.959963984540054  # the 97.5% quantile of the standard normal


def wilson_interval(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of the rate `successes / trials`; (0, 1) when there are no trials.

    With p = s/n: center = (p + z²/2n) / (1 + z²/n), half-width = z·sqrt(p(1-p)/n + z²/4n²) / (1 + z²/n).
    """
    if not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    z2 = z * z
    scale = 1 + z2 / trials
    center = (p + z2 / (2 * trials)) / scale
    half = z * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / scale
    # at s = 0 (s = n) the bound is exactly 0 (1); rounding would leave a 1e-17 (1 - 1e-16)
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == trials else min(1.0, center + half)
    return low, high


@dataclass(frozen=True)
class Rate:
    """`successes` of `trials` (counts may be fractional: a tie is half a win), with its interval."""

    successes: float
    trials: float
    rate: float | None  # None when there are no trials
    low: float
    high: float

    @classmethod
    def of(cls, successes: float, trials: float, z: float = Z95) -> Rate:
        low, high = wilson_interval(successes, trials, z)
        return cls(successes, trials, successes / trials if trials else None, low, high)


def clustered_rate(points: Iterable[Sequence[float]], z: float = Z95) -> Rate:
    """A win rate over clusters of judgements (e.g. several answers to one question): each cluster's
    points (1 win, 0.5 tie, 0 loss) are averaged into one fractional success, and the interval is
    Wilson's over the clusters, so repeated judgements of one question do not narrow it as if they
    were independent. Empty clusters are skipped."""
    means = [sum(c) / len(c) for c in (list(c) for c in points) if c]
    return Rate.of(min(math.fsum(means), len(means)), len(means), z)  # fsum: no 3.0000000000000004 of 3


# -- thumbs ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelThumbs:
    """Thumbs-up rate of one model version: overall and per day the answers were served (UTC)."""

    model_version: str
    up: int
    down: int
    overall: Rate
    by_day: dict[str, Rate]  # "2026-11-23" -> rate, days in order


def thumbs_rates(counts: Iterable[tuple[str, str, int, int]], z: float = Z95) -> list[ModelThumbs]:
    """From (model version, day, thumbs up, thumbs down) rows, one entry per model version (sorted);
    rows for the same version and day add up. Withdrawn votes are not counted: pass up/down only."""
    per_day: defaultdict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    for model, day, up, down in counts:
        if up < 0 or down < 0:
            raise ValueError(f"negative vote counts for {model} on {day}: {up} up, {down} down")
        per_day[model][(day, "up")] += up
        per_day[model][(day, "down")] += down
    result = []
    for model in sorted(per_day):
        days = sorted({day for day, _ in per_day[model]})
        ups = {day: per_day[model][(day, "up")] for day in days}
        downs = {day: per_day[model][(day, "down")] for day in days}
        up, down = sum(ups.values()), sum(downs.values())
        result.append(
            ModelThumbs(
                model,
                up,
                down,
                Rate.of(up, up + down, z),
                {day: Rate.of(ups[day], ups[day] + downs[day], z) for day in days},
            )
        )
    return result


# -- comparisons ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PairwiseWinRate:
    """How model_a fared against model_b (model_a < model_b by name) in side-by-side choices."""

    model_a: str
    model_b: str
    wins_a: int
    wins_b: int
    ties: int
    both_bad: int
    win_rate_a: Rate  # (wins_a + ties/2) of (wins_a + wins_b + ties); rate None when all were both_bad

    def rate_of(self, version: str) -> Rate:
        """`version`'s win rate in this pair: model_a's, or its mirror for model_b (the Wilson interval
        is symmetric: b's interval is 1 − a's, bounds swapped)."""
        if version == self.model_a:
            return self.win_rate_a
        if version != self.model_b:
            raise ValueError(f"{version} is not in the pair {self.model_a} / {self.model_b}")
        a = self.win_rate_a
        return Rate(
            a.trials - a.successes,
            a.trials,
            None if a.rate is None else 1.0 - a.rate,
            1.0 - a.high,
            1.0 - a.low,
        )


def pairwise_win_rates(outcomes: Iterable[tuple[str, str, str]], z: float = Z95) -> list[PairwiseWinRate]:
    """From (left model version, right model version, choice) of chosen comparisons, one entry per pair
    of different versions that met. Comparisons of a version with itself say nothing about versions
    and are left out."""
    tally: defaultdict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for left, right, raw in outcomes:
        choice = Choice(raw)
        if left == right:
            continue
        a, b = sorted((left, right))
        if choice is Choice.A:
            tally[(a, b)]["a" if left == a else "b"] += 1
        elif choice is Choice.B:
            tally[(a, b)]["a" if right == a else "b"] += 1
        else:
            tally[(a, b)][choice.value] += 1
    result = []
    for (a, b), c in sorted(tally.items()):
        decided = c["a"] + c["b"] + c[Choice.TIE.value]
        result.append(
            PairwiseWinRate(
                a,
                b,
                c["a"],
                c["b"],
                c[Choice.TIE.value],
                c[Choice.BOTH_BAD.value],
                Rate.of(c["a"] + c[Choice.TIE.value] / 2, decided, z),
            )
        )
    return result


@dataclass(frozen=True)
class PositionBias:
    """How often the left answer wins among decisive choices (A or B). Unbiased raters on randomly
    placed pairs give 50%; `biased` is True when 50% lies outside the interval."""

    decisive: int
    left_wins: int
    left_rate: Rate
    biased: bool


def position_bias(choices: Iterable[str], z: float = Z95) -> PositionBias:
    counts = Counter(Choice(choice) for choice in choices)
    left, decisive = counts[Choice.A], counts[Choice.A] + counts[Choice.B]
    rate = Rate.of(left, decisive, z)
    return PositionBias(decisive, left, rate, decisive > 0 and not rate.low <= 0.5 <= rate.high)


# -- reasons --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReasonHistogram:
    """Why a model version's answers got a thumbs down: each reason's count (every reason listed, in
    the order of feedback.votes.Reason); a vote may give several reasons, or none."""

    model_version: str
    down_votes: int
    without_reason: int
    counts: dict[str, int]


def reason_histograms(down_votes: Iterable[tuple[str, Sequence[str]]]) -> list[ReasonHistogram]:
    """From (model version, reasons) of each thumbs down, one histogram per model version (sorted)."""
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    votes: Counter[str] = Counter()
    bare: Counter[str] = Counter()
    for model, reasons in down_votes:
        votes[model] += 1
        if not reasons:
            bare[model] += 1
        counts[model].update(Reason(reason).value for reason in set(reasons))
    return [
        ReasonHistogram(model, votes[model], bare[model], {r.value: counts[model][r.value] for r in Reason})
        for model in sorted(votes)
    ]
