"""What a refresh trains on: one recorded snapshot of the feedback store, split once.

`refresh_data` reads every example from one snapshot (recorded in the run's manifest; a resumed run
reads exactly the same rows), keeps the reward model's warm start to what arrived since the previous
reward model plus a replay sample of older data (`replay`), and splits pairs, thumbs, corrections and
logged prompts with one held-out decision (trainer.hygiene `heldout_prompt_ids`: by question, paraphrases
together), the same in every refresh. Each train-side correction is also a pair over the answer it
replaced (`RefreshConfig.correction_pairs`). `with_budgets` sets each phase's token budget from the logged
prompts (p95 + the response budget).
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from core.datadir import DataDir
from trainer.errors import TrainerError

if TYPE_CHECKING:
    from core.settings import Settings
    from trainer.feedback_data import FeedbackData
    from trainer.refresh import RefreshConfigs
    from trainer.runs import Run

T = TypeVar("T")


def latest_reward(data_dir: Path) -> dict[str, Any] | None:
    path = DataDir(data_dir).latest_reward
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if Path(data.get("folder", "")).is_dir() else None


def replay(new: Sequence[T], old: Sequence[T], ratio: float, seed: int) -> list[T]:
    """All new examples plus a seeded sample of old ones, `ratio` × as many as the new (at most all)."""
    keep = min(len(old), round(ratio * max(len(new), 1)))
    return [*new, *random.Random(seed).sample(list(old), keep)]


def refresh_data(
    settings: Settings, configs: RefreshConfigs, run: Run, embedder: Any = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Examples from one recorded snapshot (the same one again when the run resumes), and the logged
    prompts of that snapshot, split by one held-out decision."""
    from feedback.store import Store
    from trainer.examples import correction_pairs
    from trainer.feedback_data import Snapshot, load_feedback
    from trainer.hygiene import heldout_prompt_ids
    from trainer.prompts import logged_prompts

    cfg, reward_cfg = configs.refresh, configs.reward
    recorded = run.manifest().get("snapshot")
    as_of = Snapshot.from_json(recorded) if recorded else None
    cap = reward_cfg.per_user_cap or None
    with Store(settings.database_path) as store:
        everything = load_feedback(store, per_user_cap=cap, seed=cfg.seed, as_of=as_of)
        previous = None if cfg.full_retrain else latest_reward(settings.data_dir)
        since = previous["snapshot"]["taken_at"] if previous else None
        fresh: FeedbackData | None = None
        if since is not None:
            fresh = load_feedback(
                store, since=since, until=everything.snapshot.taken_at, per_user_cap=cap, seed=cfg.seed
            )
        logged = logged_prompts(store, until=everything.snapshot.taken_at, seed=cfg.seed)
    snapshot = everything.snapshot.to_json()
    if not recorded:
        run.update(snapshot=snapshot, data_report=everything.report, skipped=everything.skipped)
    pairs, thumbs = list(everything.pairs), list(everything.thumbs)
    if fresh is not None:  # warm start: what arrived since the last reward model, plus a replay sample
        new_keys = {(p.prompt_id, p.chosen, p.rejected) for p in fresh.pairs}
        old_pairs = [p for p in pairs if (p.prompt_id, p.chosen, p.rejected) not in new_keys]
        new_thumb_keys = {(t.prompt_id, t.completion, t.label) for t in fresh.thumbs}
        old_thumbs = [t for t in thumbs if (t.prompt_id, t.completion, t.label) not in new_thumb_keys]
        pairs = replay(list(fresh.pairs), old_pairs, cfg.replay_ratio, cfg.seed)
        thumbs = replay(list(fresh.thumbs), old_thumbs, cfg.replay_ratio, cfg.seed)
    if len(pairs) + len(thumbs) < cfg.min_pairs:
        raise TrainerError(
            f"not enough feedback for a refresh: {len(pairs)} pairs + {len(thumbs)} thumbs "
            f"< min_pairs={cfg.min_pairs}; collect more votes or lower --min-pairs"
        )
    # one decision for every kind of data: a question (and its paraphrases) is on one side everywhere
    embed = (embedder or _embedder()).encode
    held = heldout_prompt_ids(
        [*everything.pairs, *everything.thumbs, *logged], reward_cfg.heldout_fraction, embed=embed
    )
    train_logged = [p.prompt for p in logged if p.prompt_id not in held]
    rng = random.Random(cfg.seed)
    data = {
        "pairs": [p for p in pairs if p.prompt_id not in held],
        "heldout_pairs": [p for p in pairs if p.prompt_id in held],
        "thumbs": [t for t in thumbs if t.prompt_id not in held],
        "heldout_thumbs": [t for t in thumbs if t.prompt_id in held],
        "demonstrations": [d for d in everything.demonstrations if d.prompt_id not in held],
        "correction_pairs": (
            correction_pairs([d for d in everything.demonstrations if d.prompt_id not in held])
            if cfg.correction_pairs
            else []
        ),
        "logged_prompts": rng.sample(train_logged, min(len(train_logged), cfg.max_prompts)),
        "heldout_logged_prompts": [p.prompt for p in logged if p.prompt_id in held],
        "warm_start": previous["folder"] if previous else None,
    }
    run.update(data={k: (len(v) if isinstance(v, list) else v) for k, v in data.items()})
    return data, snapshot


def _embedder() -> Any:
    """The bundled MiniLM, for the paraphrase groups of the held-out split."""
    from rag.embedding import Embedder

    return Embedder()


def with_budgets(configs: RefreshConfigs, base: str, data: dict[str, Any], run: Run) -> RefreshConfigs:
    """Every phase's token budget from the logged prompts: their p95 + the response budget (PPO: the
    p95 as its prompt budget). Recorded in the manifest."""
    from trainer.models import load_tokenizer
    from trainer.tokens import derive_max_length

    cfg = configs.refresh
    prompts = [
        *data["logged_prompts"],
        *data["heldout_logged_prompts"],
        *(p.prompt for p in data["pairs"]),
        *(t.prompt for t in data["thumbs"]),
    ]
    max_length = derive_max_length(load_tokenizer(base), prompts, cfg.response_tokens)
    run.update(budgets={"max_length": max_length, "prompt": max_length - cfg.response_tokens})
    return dataclasses.replace(
        configs,
        reward=dataclasses.replace(configs.reward, max_length=max_length),
        dpo=dataclasses.replace(configs.dpo, max_length=max_length),
        kto=dataclasses.replace(configs.kto, max_length=max_length),
        sft=dataclasses.replace(configs.sft, max_length=max_length),
        ppo=dataclasses.replace(configs.ppo, max_prompt_tokens=max_length - cfg.response_tokens),
    )
