"""DPO on the same preference pairs the reward model learns from, as an alternative to PPO.

The reference is the champion: the frozen `reference` adapter (or the bare base when the champion
has none) on the same backbone, so it costs no second copy of the weights; when training starts from
another adapter (an SFT result), `reference_adapter` keeps the champion as the reference. Reference
log-probs are computed once before training (they never change) and kept with the examples, under the
same autocast (bf16 on a GPU) as the policy's in training, so the two agree at step 0. The token budget
is the prompts' p95 plus the response budget unless `max_length` is set. After training, the
policy's KL to the champion is measured on fresh samples (trainer.divergence); above `kl_budget` the
adapter is kept in the run folder but not published as a candidate.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from trainer.config import DPOConfig
from trainer.divergence import sampled_kl
from trainer.errors import TrainerError
from trainer.loop import accelerator_for, fit
from trainer.losses import dpo_loss
from trainer.models import (
    load_policy,
    load_tokenizer,
    pick_device,
    reference_mode,
    save_policy_adapter,
    set_reference,
)
from trainer.runs import Run
from trainer.sequences import progress, sequence_logprobs
from trainer.tokens import Encoded, derive_max_length, encode

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


@dataclass(frozen=True)
class DPOItem:
    chosen: Encoded
    rejected: Encoded
    ref_chosen: float
    ref_rejected: float
    weight: float


def dpo_batch_loss(
    model: Any, items: Sequence[DPOItem], pad_id: int, beta: float, label_smoothing: float
) -> tuple[torch.Tensor, dict[str, float]]:
    logps = sequence_logprobs(model, [i.chosen for i in items] + [i.rejected for i in items], pad_id)
    n = len(items)
    ref = logps.new_tensor([i.ref_chosen for i in items] + [i.ref_rejected for i in items])
    weights = logps.new_tensor([i.weight for i in items])
    loss, chosen_r, rejected_r = dpo_loss(
        logps[:n], logps[n:], ref[:n], ref[n:], beta, label_smoothing, weights
    )
    return loss, {
        "loss": float(loss.detach()),
        "accuracy": float((chosen_r > rejected_r).float().mean()),
        "margin": float((chosen_r - rejected_r).mean()),
    }


@torch.no_grad()
def reference_logprobs(
    model: Any, encoded: Sequence[Encoded], pad_id: int, batch_size: int, accelerator: Any
) -> list[float]:
    """Summed answer log-probs under the reference, under the accelerator's autocast (as in training)."""
    out: list[float] = []
    model.eval()
    bar = progress(total=len(encoded), desc="reference log-probs", unit="seq")
    with reference_mode(model), accelerator.autocast():
        for start in range(0, len(encoded), batch_size):
            out += sequence_logprobs(model, encoded[start : start + batch_size], pad_id).float().tolist()
            bar.update(len(encoded[start : start + batch_size]))
    bar.close()
    return out


def encode_pairs(tokenizer: Any, pairs: Sequence[Pair], max_length: int) -> list[tuple[Encoded, Encoded]]:
    """(chosen, rejected) sequences of each pair: the same prompt, fitted to the budget by passages."""
    return [
        (
            encode(tokenizer, p.prompt, p.chosen, max_length, add_eos=True),
            encode(tokenizer, p.prompt, p.rejected, max_length, add_eos=True),
        )
        for p in pairs
    ]


def pair_items(
    model: Any,
    tokenizer: Any,
    pairs: Sequence[Pair],
    max_length: int,
    batch_size: int,
    accelerator: Any,
) -> list[DPOItem]:
    encoded = encode_pairs(tokenizer, pairs, max_length)
    chosen, rejected = [c for c, _ in encoded], [r for _, r in encoded]
    ref = reference_logprobs(model, chosen + rejected, int(tokenizer.pad_token_id), batch_size, accelerator)
    n = len(pairs)
    return [
        DPOItem(c, r, rc, rr, p.weight)
        for c, r, rc, rr, p in zip(chosen, rejected, ref[:n], ref[n:], pairs, strict=True)
    ]


@dataclass(frozen=True)
class DPOResult:
    adapter: Path
    metrics: dict[str, Any]
    published: bool = True  # False when the KL to the champion exceeds the budget


def train_dpo(
    *,
    base: str,
    parent_adapter: Path | None,
    cfg: DPOConfig,
    run: Run,
    pairs: Sequence[Pair],
    heldout: Sequence[Pair] = (),
    reference_adapter: Path | str | None = "parent",
) -> DPOResult:
    """`reference_adapter`: the champion's adapter (None: the bare base) when `parent_adapter` is
    another one; "parent" = the parent is the reference."""
    if not pairs:
        raise TrainerError("DPO needs preference pairs; none were given")
    tokenizer = load_tokenizer(base)
    device = pick_device(cfg.device)
    accelerator = accelerator_for(device)
    model = load_policy(base, parent_adapter, cfg, with_reference=True)
    if reference_adapter != "parent" and reference_adapter != parent_adapter:
        set_reference(model, None if reference_adapter is None else Path(reference_adapter))
    model.to(accelerator.device)
    pad = int(tokenizer.pad_token_id)
    max_length = cfg.max_length or derive_max_length(
        tokenizer, [p.prompt for p in pairs], cfg.response_tokens
    )
    run.update(max_length=max_length)

    def items(rows: Sequence[Pair]) -> list[DPOItem]:
        return pair_items(model, tokenizer, rows, max_length, cfg.batch_size, accelerator)

    train_items, heldout_items = items(pairs), items(heldout) if heldout else []
    fitted = fit(
        model=model,
        examples=train_items,
        loss_fn=lambda m, b: dpo_batch_loss(m, b, pad, cfg.beta, cfg.label_smoothing),
        cfg=cfg,
        run=run,
        accelerator=accelerator,
        desc="DPO",
    )
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if not accelerator.is_main_process:  # the main process evaluates and publishes
        return DPOResult(run.output, {})
    model.eval()
    evaluation: dict[str, float] = {}
    if heldout_items:
        with torch.no_grad():
            _, evaluation = dpo_batch_loss(model, heldout_items, pad, cfg.beta, cfg.label_smoothing)
    prompts = list(dict.fromkeys(p.prompt for p in [*heldout, *pairs]))  # held-out prompts first
    kl = sampled_kl(
        model,
        tokenizer,
        prompts[: max(cfg.kl_samples, 1)],
        samples=cfg.kl_samples,
        max_new_tokens=cfg.kl_max_new_tokens,
        max_prompt_tokens=max_length,
        seed=cfg.seed,
    )
    with run.publishing() as staging:
        save_policy_adapter(model, staging)
    result: dict[str, Any] = {
        "steps": fitted.steps,
        "seconds": fitted.seconds,
        "examples_per_s": fitted.examples_per_s,
        "final": fitted.last,
        "heldout": evaluation,
        "pairs": len(pairs),
        "kl_to_champion": kl,
        "kl_budget": cfg.kl_budget,
        "max_length": max_length,
    }
    published = kl <= cfg.kl_budget
    if not published:
        result["refused"] = f"KL to the champion {kl:.2f} exceeds the budget {cfg.kl_budget:.2f}"
        log.warning("DPO result not publishable: %s", result["refused"])
    run.succeed(metrics=result, publishable=published)
    return DPOResult(run.output, result, published)
