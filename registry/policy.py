"""Automatic promotion and rollback decisions: pure functions of the live statistics.

- Promote the canary when the human win rate of canary vs champion has its 95% CI lower bound above
  50% with at least `min_comparisons` decisive side-by-side votes, and the canary passed the gate.
- Roll back the champion when its thumbs-down rate exceeds the previous champion's by more than
  `rollback_margin`, each with at least `min_votes` votes.
The background trainer applies them when enabled (settings `auto_promote`, `auto_rollback`); every
automatic change goes through the registry like an operator's, with actor "auto" and the numbers as the
reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from feedback.stats import ModelThumbs, PairwiseWinRate
from registry.gate import GateThresholds

if TYPE_CHECKING:
    from core.settings import Settings
    from registry.versions import ModelVersion


@dataclass(frozen=True)
class Decision:
    act: bool
    reason: str


def promotion_decision(
    win_rates: Sequence[PairwiseWinRate], champion: str, canary: str, gate_passed: bool, min_comparisons: int
) -> Decision:
    for row in win_rates:
        if {row.model_a, row.model_b} != {champion, canary}:
            continue
        wins, losses = (row.wins_a, row.wins_b) if row.model_a == canary else (row.wins_b, row.wins_a)
        decided = wins + losses + row.ties
        low = row.rate_of(canary).low
        if decided < min_comparisons:
            return Decision(False, f"{decided} comparisons of {canary} vs {champion}, need {min_comparisons}")
        if not gate_passed:
            return Decision(False, f"{canary} did not pass the evaluation gate")
        if low > 0.5:
            return Decision(
                True, f"{canary} wins {wins}-{losses} (ties {row.ties}) vs {champion}; CI low {low:.2f}"
            )
        return Decision(False, f"{canary} win-rate CI lower bound {low:.2f} is not above 0.50")
    return Decision(False, f"no side-by-side votes between {canary} and {champion} yet")


def rollback_decision(
    thumbs: Sequence[ModelThumbs], champion: str, previous: str, margin: float, min_votes: int
) -> Decision:
    by_version = {t.model_version: t for t in thumbs}
    new, old = by_version.get(champion), by_version.get(previous)
    if new is None or old is None or new.up + new.down < min_votes or old.up + old.down < min_votes:
        return Decision(False, f"fewer than {min_votes} votes on {champion} or {previous}")
    new_down = new.down / (new.up + new.down)
    old_down = old.down / (old.up + old.down)
    if new_down > old_down + margin:
        return Decision(True, f"thumbs-down {new_down:.0%} on {champion} vs {old_down:.0%} on {previous}")
    return Decision(False, f"thumbs-down {new_down:.0%} vs {old_down:.0%}: within the margin {margin:.0%}")


def apply_policies(settings: Settings, *, smoke: Callable[[ModelVersion], None] | None = None) -> list[str]:
    """Check both rules once against the store and act through the registry; what was done (or why not)."""
    from feedback.store import Store
    from registry.registry import Registry

    notes: list[str] = []
    if not (settings.auto_promote or settings.auto_rollback) or not settings.database_path.exists():
        return notes
    registry = Registry(settings.models_dir, GateThresholds.from_settings(settings))
    aliases = registry.aliases()
    champion = aliases.get("champion")
    with Store(settings.database_path) as store:
        if settings.auto_promote and champion and "canary" in aliases:
            canary = aliases["canary"]
            decision = promotion_decision(
                store.win_rates(),
                champion,
                canary,
                registry.gate(canary).passed,
                settings.auto_promote_min_comparisons,
            )
            notes.append(f"promote {canary}: {decision.reason}")
            if decision.act:
                registry.promote(canary, actor="auto", reason=decision.reason, smoke=smoke)
                return notes
        if settings.auto_rollback and champion:
            previous = next(
                (
                    e.from_version
                    for e in registry.history("champion", 1000)
                    if e.action == "promote" and e.to_version == champion and e.from_version
                ),
                None,
            )
            if previous:
                since = registry.history("champion", 1)[0].at.replace("Z", ".000Z")
                recent = store.thumbs_stats(since=since, model_version=champion)
                before = store.thumbs_stats(model_version=previous)
                decision = rollback_decision(
                    [*recent, *before],
                    champion,
                    previous,
                    settings.auto_rollback_margin,
                    settings.auto_rollback_min_votes,
                )
                notes.append(f"rollback {champion}: {decision.reason}")
                if decision.act:
                    registry.rollback(actor="auto", reason=decision.reason, smoke=smoke)
    return notes
