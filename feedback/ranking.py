"""A Bradley–Terry ranking of model versions from side-by-side choices, with bootstrap intervals.

Model: version i beats version j with probability p_i / (p_i + p_j). Strengths are defined up to a
common factor; they are reported with geometric mean 1, so 1.0 is an average version and p_i / p_j
is the odds that i beats j.

Fit: the minorization–maximization (MM) iteration of Hunter (2004, "MM algorithms for generalized
Bradley–Terry models"):

    p_i <- W_i / sum_{j != i} N_ij / (p_i + p_j)

with W_i the wins of i and N_ij the decided comparisons of i and j (a tie is half a win for each
side; `both_bad` is not a decision and is left out). Each step raises the likelihood; the iteration
converges to the maximum-likelihood strengths when they exist, i.e. when no group of versions lost
every comparison against the rest (the "beat or tied" graph is strongly connected).

`prior` adds that many virtual ties between every pair of versions (default 1): it keeps strengths
finite when a version never lost or never won (common in small samples, and in bootstrap resamples)
and shrinks them slightly toward equal. `prior=0` is the plain maximum-likelihood fit.

Intervals: percentile bootstrap over comparisons. The chosen comparisons are resampled with
replacement (drawn as multinomial counts over the distinct (pair, outcome) cells, which is the same
distribution), each resample is refitted, and the (1 - confidence)/2 and (1 + confidence)/2 quantiles
of each version's strength are its interval. Seeded: the same data, seed and number of resamples
give the same intervals. All resamples are fitted together as one (resamples, k, k) array.

numpy is imported inside the functions that need it: `import feedback` stays cheap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from feedback.comparisons import Choice

if TYPE_CHECKING:
    import numpy as np


def mm_step(wins: Sequence[Sequence[float]], strengths: Sequence[float]) -> list[float]:
    """One MM update, unnormalized: `wins[i][j]` is how often i beat j (ties as halves), diagonal 0."""
    k = len(strengths)
    updated = []
    for i in range(k):
        won = sum(wins[i][j] for j in range(k) if j != i)
        pace = sum((wins[i][j] + wins[j][i]) / (strengths[i] + strengths[j]) for j in range(k) if j != i)
        updated.append(won / pace if pace else strengths[i])
    return updated


def strongly_connected(wins: Sequence[Sequence[float]]) -> bool:
    """True when every version can be reached from every other along "beat or tied" edges: the
    condition for maximum-likelihood strengths to exist."""
    k = len(wins)

    def reaches_all(beats: Any) -> bool:
        seen, todo = {0}, [0]
        while todo:
            i = todo.pop()
            for j in range(k):
                if j not in seen and beats(i, j):
                    seen.add(j)
                    todo.append(j)
        return len(seen) == k

    return reaches_all(lambda i, j: wins[i][j] > 0) and reaches_all(lambda i, j: wins[j][i] > 0)


def _fit_batch(wins: np.ndarray, tol: float, max_iter: int) -> np.ndarray:
    """MM on a stack of win matrices (batch, k, k) -> strengths (batch, k), geometric mean 1 each."""
    import numpy as np

    won = wins.sum(axis=2)  # (batch, k)
    games = wins + wins.transpose(0, 2, 1)  # (batch, k, k), zero diagonal
    p = np.ones(won.shape)
    for _ in range(max_iter):
        pace = (games / (p[:, :, None] + p[:, None, :])).sum(axis=2)  # (batch, k)
        log_new = np.log(won / pace)
        log_new -= log_new.mean(axis=1, keepdims=True)
        change = np.abs(log_new - np.log(p)).max()
        p = np.exp(log_new)
        if change < tol:
            return p
    raise ArithmeticError(
        f"Bradley–Terry did not converge in {max_iter} iterations; use a larger prior or max_iter"
    )


def fit(
    wins: Sequence[Sequence[float]], *, prior: float = 0.0, tol: float = 1e-10, max_iter: int = 10_000
) -> list[float]:
    """Maximum-likelihood strengths (geometric mean 1) of the versions of a k×k win matrix, after
    adding `prior` virtual ties to every pair. ValueError when they do not exist (prior 0 only)."""
    import numpy as np

    matrix = np.asarray(wins, dtype=float)
    k = matrix.shape[0]
    if matrix.shape != (k, k) or k < 2 or (matrix < 0).any() or np.diag(matrix).any():
        raise ValueError("wins must be a k×k matrix (k >= 2) of counts >= 0 with a zero diagonal")
    if prior < 0:
        raise ValueError(f"prior must be >= 0, got {prior}")
    matrix = matrix + prior / 2 * (1 - np.eye(k))
    if not strongly_connected(matrix.tolist()):
        raise ValueError(
            "some versions lost (or won) every comparison against the others: their strengths are "
            "infinite; use prior > 0"
        )
    return [float(x) for x in _fit_batch(matrix[None], tol, max_iter)[0]]


@dataclass(frozen=True)
class Rating:
    """A version's place in the ranking (rank 1 = strongest) and its strength with its interval."""

    model_version: str
    rank: int
    strength: float
    low: float
    high: float
    comparisons: int  # decided comparisons (win, loss or tie) against other versions


def bradley_terry(
    outcomes: Iterable[tuple[str, str, str]],
    *,
    resamples: int = 1000,
    seed: int = 0,
    prior: float = 1.0,
    confidence: float = 0.95,
    tol: float = 1e-10,
    max_iter: int = 10_000,
) -> list[Rating]:
    """Rank the versions from (left version, right version, choice) of chosen comparisons; comparisons
    of a version with itself and `both_bad` choices are left out. `resamples=0` skips the bootstrap
    (the interval is then the point). Strongest first."""
    import numpy as np

    if isinstance(resamples, bool) or not isinstance(resamples, int) or resamples < 0:
        raise ValueError(f"resamples must be an integer >= 0, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if resamples and prior <= 0:
        raise ValueError("bootstrap resamples can lose every win of a version: use prior > 0 with them")
    # (version a, version b > a, outcome): 0 a won, 1 b won, 2 tie
    cells: Counter[tuple[str, str, int]] = Counter()
    for left, right, raw in outcomes:
        choice = Choice(raw)
        if left == right or choice is Choice.BOTH_BAD:
            continue
        a, b = sorted((left, right))
        if choice is Choice.TIE:
            cells[(a, b, 2)] += 1
        else:
            cells[(a, b, int((left if choice is Choice.A else right) == b))] += 1
    versions = sorted({v for a, b, _ in cells for v in (a, b)})
    if not versions:
        return []
    index = {v: i for i, v in enumerate(versions)}
    k, keys = len(versions), list(cells)
    # how each cell adds to the flattened win matrix: a win 1 to (winner, loser), a tie 1/2 both ways
    spread = np.zeros((len(keys), k * k))
    for c, (a, b, outcome) in enumerate(keys):
        i, j = index[a], index[b]
        if outcome == 2:
            spread[c, i * k + j] = spread[c, j * k + i] = 0.5
        else:
            w, loser = (i, j) if outcome == 0 else (j, i)
            spread[c, w * k + loser] = 1.0
    counts = np.array([cells[key] for key in keys], dtype=float)
    virtual = prior / 2 * (1 - np.eye(k))
    strengths = fit((counts @ spread).reshape(k, k).tolist(), prior=prior, tol=tol, max_iter=max_iter)
    if resamples:
        rng = np.random.default_rng(seed)
        drawn = rng.multinomial(
            int(counts.sum()), counts / counts.sum(), size=resamples
        )  # (resamples, cells)
        stack = (drawn @ spread).reshape(resamples, k, k) + virtual
        fitted = _fit_batch(stack, tol, max_iter)  # (resamples, k)
        tails = (1 - confidence) / 2
        low, high = np.quantile(fitted, [tails, 1 - tails], axis=0)
    else:
        low = high = np.array(strengths)
    played = Counter[str]()
    for (a, b, _), n in cells.items():
        played[a] += n
        played[b] += n
    order = sorted(range(k), key=lambda i: (-strengths[i], versions[i]))
    return [
        Rating(versions[i], rank, strengths[i], float(low[i]), float(high[i]), played[versions[i]])
        for rank, i in enumerate(order, start=1)
    ]
