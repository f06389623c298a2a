"""A simulation's figures against the targets, and the JSON (and plot) it writes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
TARGET_WIN_RATE = 0.65  # issue 17: held-out win rate after one refresh


def summarize(rounds: Sequence[dict[str, Any]], max_similarity_drop: float) -> dict[str, Any]:
    """The targets: ≥ 65% win rate after the first refresh, and the golden similarity of every promoted
    model down by at most the guard (False when nothing was promoted)."""
    wins = [r["heldout"]["win_rate"] for r in rounds if r.get("heldout")]
    deltas = [r["refresh"]["similarity"]["delta"] for r in rounds if r.get("refresh", {}).get("similarity")]
    promoted = [r for r in rounds if (r.get("promotion") or {}).get("action") == "promoted"]
    # the guard is on the models that went on to serve: a refused candidate's drop is reported, not held
    served = [r["refresh"]["similarity"]["delta"] for r in promoted if r["refresh"].get("similarity")]
    first = wins[0] if wins else None
    return {
        "win_rates": wins,
        "win_rate_cis": [r["heldout"].get("ci") for r in rounds if r.get("heldout")],
        "pooled_win_rates": [
            (r["heldout"].get("pooled") or {}).get("win_rate") for r in rounds if r.get("heldout")
        ],
        "pooled_win_rate_cis": [
            (r["heldout"].get("pooled") or {}).get("ci") for r in rounds if r.get("heldout")
        ],
        "live_win_rates": [r["canary"]["live"]["win_rate"] for r in rounds if "live" in r.get("canary", {})],
        "target_win_rate": TARGET_WIN_RATE,
        "win_rate_target_met": first is not None and first >= TARGET_WIN_RATE,
        "similarity_deltas": deltas,
        "max_similarity_drop": max_similarity_drop,
        "promoted_similarity_deltas": served,
        "similarity_guard_met": bool(served)
        and all(d is not None and d >= -max_similarity_drop for d in served),
        "promotions": len(promoted),
    }


def _machine() -> dict[str, Any]:
    import os
    import platform

    import torch

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def write_results(result: dict[str, Any], out: Path) -> Path | None:
    """The JSON at `out` and the plot beside it (`.png`); the plot's path, or None without matplotlib."""
    from trainer.runs import write_json

    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, result)  # atomic: rewritten after every round, never left half-written
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("no plot: matplotlib is not installed (pip install matplotlib)")
        return None
    rounds = result["rounds"]
    xs = [r["round"] for r in rounds]
    nan = float("nan")

    def series(get: Callable[[dict[str, Any]], Any]) -> list[float]:
        values = []
        for r in rounds:
            try:
                value = get(r)
            except (KeyError, TypeError):
                value = None
            values.append(nan if value is None else float(value))
        return values

    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(
        xs, series(lambda r: r["heldout"]["win_rate"]), "o-", label="win rate of the new model (held out)"
    )
    pooled = series(lambda r: r["heldout"]["pooled"]["win_rate"])
    if any(v == v for v in pooled):  # not all NaN: the run judged sampled answers too
        ax.plot(xs, pooled, "o--", label="held out, greedy + sampled answers")
    live = series(lambda r: r["canary"]["live"]["win_rate"])
    low = series(lambda r: r["canary"]["live"]["ci"][0])
    high = series(lambda r: r["canary"]["live"]["ci"][1])
    ax.errorbar(
        xs,
        live,
        yerr=[
            [v - lo for v, lo in zip(live, low, strict=True)],
            [h - v for v, h in zip(live, high, strict=True)],
        ],
        fmt="D:",
        capsize=3,
        label="canary's live win rate (95% CI), train questions",
    )
    ax.plot(
        xs, series(lambda r: r["feedback"]["thumbs_up_rate"]), "s-", label="thumbs-up rate, round's feedback"
    )
    ax.plot(
        xs,
        series(lambda r: r["heldout"]["would_thumbs_up"]["new"]),
        "^--",
        label="new model's held-out answers a user would thumb up",
    )
    ax.axhline(TARGET_WIN_RATE, ls="--", color="gray", lw=1, label=f"target {TARGET_WIN_RATE:.0%}")
    ax.axhline(0.5, ls=":", color="silver", lw=1)
    ax.set(
        xlabel="round",
        ylabel="rate",
        ylim=(0, 1),
        xticks=xs,
        title=f"kbloop simulate ({result['simulation']['preference']})",
    )
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return png


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def _ci(ci: Sequence[float] | None) -> str:
    return "" if ci is None else f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})"


# -- the commands ---------------------------------------------------------------------------------
