"""Reward model: a scalar head on the policy's base, trained on comparisons and thumbs.

Loss per batch = Bradley–Terry on the pairs in it (−log σ(r_chosen − r_rejected), weighted so chosen-left
and chosen-right pairs count equally) + `thumbs_weight` × BCE of the thumbs' scores against up/down.
All sequences of a batch go through one forward pass. After training the reward mean and std over the
training responses are stored beside the model, so PPO can normalise its scores.

The score of a sequence is the head's output at its last real token, found from the attention mask
(`last_token_index`), never from the pad id: pad = eos = `<|im_end|>` also appears inside prompts;
older transformers releases (pyproject allows >=4.45) pool the score at the first pad id, newer ones at
the last token that is not the pad id. The head's per-token output is taken from the `score` module
itself (a forward hook), so no transformers version's pooling is used.

Training covers every pair once by default (`RewardConfig.max_steps` 0), within
`RewardConfig.time_budget_min`, in batches grouped by length when the data is pairs only; the scoring
pass and evaluations sort by length too and show progress (trainer/progress.py).

A refresh warm-starts from the previous reward model (`warm_start`) and trains on the feedback that
arrived since plus a replay sample of older data (see trainer/refresh.py); a full retrain starts from
the policy base.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from trainer import metrics as M
from trainer.config import RewardConfig
from trainer.errors import TrainerError
from trainer.loop import Fitted, accelerator_for, fit
from trainer.losses import bradley_terry_loss, thumbs_bce_loss
from trainer.models import load_reward_model, load_tokenizer, pick_device, reward_base, save_reward_model
from trainer.progress import Progress
from trainer.runs import Run
from trainer.tokens import encode, pad_right

log = logging.getLogger(__name__)


class Pair(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def chosen(self) -> str: ...

    @property
    def rejected(self) -> str: ...

    @property
    def weight(self) -> float: ...


class Thumb(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def completion(self) -> str: ...

    @property
    def label(self) -> bool: ...

    @property
    def weight(self) -> float: ...


@dataclass(frozen=True)
class Item:
    """One training example: a pair (two sequences) or a thumb (one sequence with a label)."""

    seqs: tuple[list[int], ...]
    label: float | None  # None for pairs
    weight: float
    prompt_lens: tuple[int, ...] = ()  # the prompt's tokens at the start of each sequence


def encode_items(
    tokenizer: Any, pairs: Sequence[Pair], thumbs: Sequence[Thumb], max_length: int
) -> list[Item]:
    items = []
    for p in pairs:
        chosen = encode(tokenizer, p.prompt, p.chosen, max_length, add_eos=False)
        rejected = encode(tokenizer, p.prompt, p.rejected, max_length, add_eos=False)
        items.append(
            Item((chosen.ids, rejected.ids), None, p.weight, (chosen.prompt_len, rejected.prompt_len))
        )
    for t in thumbs:
        one = encode(tokenizer, t.prompt, t.completion, max_length, add_eos=False)
        items.append(Item((one.ids,), float(t.label), t.weight, (one.prompt_len,)))
    return items


def group_by_prompt(items: Sequence[Item], most: int = 16) -> list[tuple[Item, ...]]:
    """The items in groups that share their (first sequence's) prompt, in order of first appearance, at
    most `most` items a group (a larger one is split)."""
    groups: dict[tuple[int, ...], list[Item]] = {}
    for item in items:
        n = item.prompt_lens[0] if item.prompt_lens else 0
        groups.setdefault(tuple(item.seqs[0][:n]), []).append(item)
    return [tuple(g[i : i + most]) for g in groups.values() for i in range(0, len(g), most)]


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """(batch,) position of each row's last real token, from a (batch, seq) 0/1 attention mask; right or
    left padding alike. A row without any real token gives 0."""
    positions = torch.arange(mask.shape[-1], device=mask.device).expand_as(mask)  # (batch, seq)
    return (positions * (mask > 0)).argmax(-1)


def score_head(model: Any) -> torch.nn.Module:
    """The scalar head (`score`, possibly inside PEFT's or DDP's wrappers) of a sequence-classification
    model."""
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] == "score":
            return module
    raise TrainerError("the reward model has no `score` head")


def forward_scores(model: Any, seqs: Sequence[list[int]], pad_id: int) -> torch.Tensor:
    """(n,) scalar rewards of sequences: the head's output at each one's last real token."""
    device = next(model.parameters()).device
    ids, mask = pad_right(seqs, pad_id)
    captured: list[torch.Tensor] = []
    handle = score_head(model).register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
    finally:
        handle.remove()
    per_token = captured[-1]  # (batch, seq, 1)
    if per_token.dim() != 3:
        raise TrainerError(f"the score head gave shape {tuple(per_token.shape)}, expected (batch, seq, 1)")
    rows = torch.arange(per_token.shape[0], device=per_token.device)
    return per_token[rows, last_token_index(mask).to(per_token.device), 0].float()


def shared_prompt_scores(
    model: Any, seqs: Sequence[list[int]], prompt_lens: Sequence[int], pad_id: int
) -> torch.Tensor:
    """(n,) the same scores as `forward_scores`, with each distinct prompt run once: its key/value cache
    is repeated for the sequences that start with it, which continue from it (trainer/shared_prompt.py).
    Gradients flow through the shared prompt pass."""
    from trainer.shared_prompt import cache_keyword

    device = next(model.parameters()).device
    groups: dict[tuple[int, ...], list[int]] = {}
    for row, (seq, n) in enumerate(zip(seqs, prompt_lens, strict=True)):
        groups.setdefault(tuple(seq[:n]), []).append(row)
    keyword = cache_keyword(model)
    out: list[torch.Tensor | None] = [None] * len(seqs)
    captured: list[torch.Tensor] = []  # the score head's outputs of the passes of one prompt
    handle = score_head(model).register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        for prompt, rows in groups.items():
            captured.clear()
            if not prompt:  # nothing to share
                values = forward_scores(model, [seqs[r] for r in rows], pad_id)
                for row, value in zip(rows, values, strict=True):
                    out[row] = value
                continue
            answers = [seqs[r][len(prompt) :] for r in rows]
            width, k, n = max(len(a) for a in answers), len(rows), len(prompt)
            first = model(input_ids=torch.tensor([prompt], device=device), use_cache=True)
            if width:
                cache = first.cache if keyword == "cache" else first.past_key_values
                cache.batch_repeat_interleave(k)
                ids = torch.full((k, width), pad_id, dtype=torch.long, device=device)
                for j, answer in enumerate(answers):
                    ids[j, : len(answer)] = torch.tensor(answer, dtype=torch.long, device=device)
                model(
                    input_ids=ids,
                    **{keyword: cache},
                    attention_mask=torch.ones((k, n + width), dtype=torch.long, device=device),
                    position_ids=torch.arange(n, n + width, device=device).expand(k, -1),
                )
            at_prompt_end = captured[0][0, -1, 0]
            for j, row in enumerate(rows):  # right padding: the last real token's output is the score
                out[row] = captured[1][j, len(answers[j]) - 1, 0] if answers[j] else at_prompt_end
    finally:
        handle.remove()
    return torch.stack([value for value in out if value is not None]).float()


def reward_loss(
    model: Any, batch: Sequence[Item], pad_id: int, thumbs_weight: float, *, share_prompts: bool = False
) -> tuple[torch.Tensor, dict[str, float]]:
    seqs = [s for item in batch for s in item.seqs]
    if share_prompts and all(len(item.prompt_lens) == len(item.seqs) for item in batch):
        lens = [n for item in batch for n in item.prompt_lens]
        scores = shared_prompt_scores(model, seqs, lens, pad_id)
    else:
        scores = forward_scores(model, seqs, pad_id)
    pairs, thumbs, at = [], [], 0
    for item in batch:
        pairs.append((at, at + 1, item.weight)) if item.label is None else thumbs.append(
            (at, item.label, item.weight)
        )
        at += len(item.seqs)
    loss = scores.new_zeros(())
    values: dict[str, float] = {}
    if pairs:
        chosen = scores[[c for c, _, _ in pairs]]
        rejected = scores[[r for _, r, _ in pairs]]
        weights = scores.new_tensor([w for _, _, w in pairs])
        bt = bradley_terry_loss(chosen, rejected, weights=weights)
        loss = loss + bt
        values["bt_loss"] = float(bt.detach())
        values["accuracy"] = float((chosen > rejected).float().mean())
    if thumbs:
        s = scores[[i for i, _, _ in thumbs]]
        labels = scores.new_tensor([y for _, y, _ in thumbs])
        weights = scores.new_tensor([w for _, _, w in thumbs])
        bce = thumbs_bce_loss(s, labels, weights)
        loss = loss + thumbs_weight * bce
        values["bce_loss"] = float(bce.detach())
    values["loss"] = float(loss.detach())
    return loss, values


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices in batches of similar length (longest first), so a batch pads little."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@torch.inference_mode()
def score(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    completions: Sequence[str],
    *,
    max_length: int = 512,
    batch_size: int = 8,
    phase: str = "reward model: scoring",
    folder: Path | None = None,
    show: bool | None = None,
) -> list[float]:
    """Raw reward of each (prompt, completion), in input order, progress shown (and kept in
    `folder`/progress.json when given). Completions to the same prompt (PPO's group of answers, the
    employees' answers to one question) share one pass of the prompt (`shared_prompt_scores`, 16 at a
    time); the others go in batches of similar length. `show` None: a bar only for passes of more than
    64 sequences (PPO scores each small rollout batch without one)."""
    model.eval()
    encoded = [
        encode(tokenizer, p, c, max_length, add_eos=False) for p, c in zip(prompts, completions, strict=True)
    ]
    seqs = [e.ids for e in encoded]
    pad = int(tokenizer.pad_token_id)
    by_prompt: dict[tuple[int, ...], list[int]] = {}
    for i, e in enumerate(encoded):
        by_prompt.setdefault(tuple(e.ids[: e.prompt_len]), []).append(i)
    shared = [
        rows[j : j + 16] for rows in by_prompt.values() if len(rows) > 1 for j in range(0, len(rows), 16)
    ]
    alone = [rows[0] for rows in by_prompt.values() if len(rows) == 1]
    out = [0.0] * len(seqs)
    enabled = len(seqs) > 64 if show is None else show
    with Progress(phase, len(seqs), folder=folder, unit="seq", enabled=enabled) as progress:
        for rows in shared:
            lens = [encoded[i].prompt_len for i in rows]
            values = shared_prompt_scores(model, [seqs[i] for i in rows], lens, pad).tolist()
            for i, value in zip(rows, values, strict=True):
                out[i] = value
            progress.update(len(rows))
        for batch in length_batches([len(seqs[i]) for i in alone], batch_size):
            rows = [alone[b] for b in batch]
            values = forward_scores(model, [seqs[i] for i in rows], pad).tolist()
            for i, value in zip(rows, values, strict=True):
                out[i] = value
            progress.update(len(rows))
    return out


def report_from_scores(
    chosen: Sequence[float],
    rejected: Sequence[float],
    thumb_scores: Sequence[float] = (),
    labels: Sequence[bool] = (),
) -> dict[str, float]:
    """Pairwise accuracy and calibration of pair margins; accuracy and AUC of thumbs' scores."""
    report: dict[str, float] = {"pairs": float(len(chosen)), "thumbs": float(len(thumb_scores))}
    if chosen:
        margins = [c - r for c, r in zip(chosen, rejected, strict=True)]
        report |= {
            "pair_accuracy": M.pairwise_accuracy(margins),
            "mean_margin": sum(margins) / len(margins),
            "ece": M.expected_calibration_error(margins),
            "brier": M.brier_score(margins),
        }
    if thumb_scores:
        report |= {
            "thumbs_accuracy": sum((x > 0) == y for x, y in zip(thumb_scores, labels, strict=True))
            / len(thumb_scores),
            "thumbs_auc": M.roc_auc(thumb_scores, labels),
        }
    return report


def evaluate(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    thumbs: Sequence[Thumb] = (),
    *,
    max_length: int = 512,
    batch_size: int = 8,
    phase: str = "reward model: evaluation",
    folder: Path | None = None,
) -> dict[str, float]:
    """Pairwise accuracy and calibration on pairs; accuracy and AUC on thumbs."""
    s = score_examples(
        model,
        tokenizer,
        pairs,
        thumbs,
        max_length=max_length,
        batch_size=batch_size,
        phase=phase,
        folder=folder,
    )
    n = len(pairs)
    return report_from_scores(s[:n], s[n : 2 * n], s[2 * n :], [bool(t.label) for t in thumbs])


def score_examples(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    thumbs: Sequence[Thumb] = (),
    *,
    max_length: int = 512,
    batch_size: int = 8,
    phase: str = "reward model: scoring",
    folder: Path | None = None,
) -> list[float]:
    """Raw rewards in one pass: every pair's chosen, then every pair's rejected, then every thumb."""
    prompts = [p.prompt for p in pairs] * 2 + [t.prompt for t in thumbs]
    completions = [p.chosen for p in pairs] + [p.rejected for p in pairs] + [t.completion for t in thumbs]
    return score(
        model,
        tokenizer,
        prompts,
        completions,
        max_length=max_length,
        batch_size=batch_size,
        phase=phase,
        folder=folder,
    )


@dataclass(frozen=True)
class RewardResult:
    folder: Path
    train: dict[str, float]
    heldout: dict[str, float]
    stats: dict[str, float]
    examples_per_s: float


def train_reward(
    *,
    base: str,
    cfg: RewardConfig,
    run: Run,
    pairs: Sequence[Pair],
    thumbs: Sequence[Thumb] = (),
    heldout_pairs: Sequence[Pair] = (),
    heldout_thumbs: Sequence[Thumb] = (),
) -> RewardResult:
    """Train (or continue) a reward model and publish it to `run.output`."""
    if not pairs and not thumbs:
        raise TrainerError("the reward model needs preference pairs or thumbs; none were given")
    source = cfg.warm_start or base
    base_model = reward_base(source)
    tokenizer = load_tokenizer(base_model)
    device = pick_device(cfg.device)
    accelerator = accelerator_for(device)
    model = load_reward_model(source, cfg, lora=cfg.lora, pad_token_id=tokenizer.pad_token_id)
    items = encode_items(tokenizer, pairs, thumbs, cfg.max_length)
    pad = int(tokenizer.pad_token_id)
    fitted: Fitted[Any]
    if cfg.share_prompts:  # a step = `batch_size` prompts with every example of each
        groups = group_by_prompt(items)
        fitted = fit(
            model=model,
            examples=groups,
            loss_fn=lambda m, batch: reward_loss(
                m, [i for g in batch for i in g], pad, cfg.thumbs_weight, share_prompts=True
            ),
            cfg=cfg,
            run=run,
            accelerator=accelerator,
            desc="reward model: training",
            time_budget_s=cfg.time_budget_min * 60.0,
        )
    else:
        fitted = fit(
            model=model,
            examples=items,
            loss_fn=lambda m, batch: reward_loss(m, batch, pad, cfg.thumbs_weight),
            cfg=cfg,
            run=run,
            accelerator=accelerator,
            desc="reward model: training",
            # pairs are grouped by length (each pair is its own contrast); thumbs are not: their length can
            # follow their label, and a batch of one label teaches the BCE a bias instead of the difference
            lengths=None if thumbs else [max(len(s) for s in item.seqs) for item in items],
            time_budget_s=cfg.time_budget_min * 60.0,
        )
    # whole epochs plus the share of the last one the steps covered, in examples
    examples_seen = min(len(items) * cfg.epochs, round(len(items) * fitted.steps / fitted.steps_per_epoch))
    if fitted.stopped_by:
        log.warning(
            "reward model: %s reached after %d of %d steps (%d of %d examples); raise --time-budget-min "
            "to see them all",
            fitted.stopped_by,
            fitted.steps,
            fitted.planned_steps,
            min(len(items), examples_seen),
            len(items),
        )
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if not accelerator.is_main_process:  # the main process evaluates and publishes
        return RewardResult(run.output, {}, {}, {}, fitted.examples_per_s)
    # One scoring pass over a seeded sample of the training data gives both the reward's mean/std (for
    # normalisation) and the train-split report; on CPU scoring every training response costs as much
    # as a third of the training itself.
    rng = random.Random(cfg.seed)
    sample_pairs = rng.sample(list(pairs), min(len(pairs), cfg.stats_sample))
    sample_thumbs = rng.sample(list(thumbs), min(len(thumbs), max(cfg.stats_sample // 2, 1)))
    n = len(sample_pairs)
    raw = score_examples(
        model, tokenizer, sample_pairs, sample_thumbs, max_length=cfg.max_length, folder=run.root
    )
    mean = sum(raw) / len(raw)
    std = math.sqrt(sum((x - mean) ** 2 for x in raw) / max(1, len(raw) - 1)) or 1.0
    stats = {"mean": mean, "std": std}
    heldout = (
        evaluate(model, tokenizer, heldout_pairs, heldout_thumbs, max_length=cfg.max_length, folder=run.root)
        if heldout_pairs or heldout_thumbs
        else {"pairs": 0.0, "thumbs": 0.0}
    )
    train_eval = report_from_scores(
        raw[:n], raw[n : 2 * n], raw[2 * n :], [bool(t.label) for t in sample_thumbs]
    )
    with run.publishing() as staging:
        save_reward_model(model, staging, base_model, stats)
        tokenizer.save_pretrained(str(staging / "tokenizer"))
    run.succeed(
        metrics={
            "train": train_eval,
            "heldout": heldout,
            "reward_stats": stats,
            "examples_per_s": fitted.examples_per_s,
            "steps": fitted.steps,
            "planned_steps": fitted.planned_steps,
            "examples": len(items),
            "examples_seen": examples_seen,
            "stopped_by": fitted.stopped_by,
            "seconds": fitted.seconds,
        },
        warm_start=cfg.warm_start or None,
    )
    log.info("reward model: held-out %s", heldout)
    return RewardResult(run.output, train_eval, heldout, stats, fitted.examples_per_s)


def load_for_scoring(folder: Path, device: str = "auto") -> tuple[Any, Any, dict[str, float]]:
    """(model in eval mode on its device, tokenizer, reward mean/std) of a published reward model."""
    from trainer.models import reward_stats

    base = reward_base(str(folder))
    tokenizer = load_tokenizer(base)
    model = load_reward_model(str(folder), None, lora=False, pad_token_id=tokenizer.pad_token_id)
    where = pick_device(device)
    model.to(where.device)
    model.eval()
    return model, tokenizer, reward_stats(folder)
