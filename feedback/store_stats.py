"""The Store's statistics methods: fetch the rows, hand them to the pure functions.

A mixin of feedback.store.Store. Time windows are on when the answers were served (votes: bucketed
by that day too) or the pairs shown (comparisons): the question is how a model version did when it
was serving, whenever the feedback arrived.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import TYPE_CHECKING

from feedback import comparisons, stats, votes
from feedback.ranking import Rating, bradley_terry
from feedback.stats import ModelThumbs, PairwiseWinRate, PositionBias, ReasonHistogram

if TYPE_CHECKING:
    from sqlite_utils import Database


class StatisticsMethods:
    # provided by Store
    def _session(self) -> AbstractContextManager[Database]:
        raise NotImplementedError

    def thumbs_stats(
        self, *, since: str | None = None, until: str | None = None, model_version: str | None = None
    ) -> list[ModelThumbs]:
        """Thumbs-up rate per model version, overall and per day, with 95% Wilson intervals."""
        with self._session() as db:
            counts = votes.thumbs_counts(db.conn, since, until, model_version)
        return stats.thumbs_rates(counts)

    def reason_stats(
        self, *, since: str | None = None, until: str | None = None, model_version: str | None = None
    ) -> list[ReasonHistogram]:
        """Why answers got a thumbs down, per model version."""
        with self._session() as db:
            return stats.reason_histograms(votes.down_reasons(db.conn, since, until, model_version))

    def win_rates(self, *, since: str | None = None, until: str | None = None) -> list[PairwiseWinRate]:
        """Pairwise win rates between model versions (ties half, both_bad apart), 95% intervals."""
        with self._session() as db:
            outcomes = comparisons.outcomes(db.conn, since, until)
        return stats.pairwise_win_rates(outcomes)

    def ranking(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        resamples: int = 1000,
        seed: int = 0,
        prior: float = 1.0,
    ) -> list[Rating]:
        """Bradley–Terry ranking of the model versions, strongest first, with bootstrap intervals."""
        with self._session() as db:
            outcomes = comparisons.outcomes(db.conn, since, until)
        return bradley_terry(outcomes, resamples=resamples, seed=seed, prior=prior)

    def position_bias(self, *, since: str | None = None, until: str | None = None) -> PositionBias:
        """How often the left answer wins among decisive choices, flagged when 50% is outside its
        95% interval."""
        with self._session() as db:
            outcomes = comparisons.outcomes(db.conn, since, until)
        return stats.position_bias(choice for _, _, choice in outcomes)
