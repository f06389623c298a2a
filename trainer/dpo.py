"""DPO on the same preference pairs the reward model learns from, as an alternative to PPO.

The reference is the champion: the frozen `reference` adapter (or the bare base when the champion
has none) on the same backbone, so it costs no second copy of the weights. Reference log-probs are
computed once before training (they never change) and kept with the examples. After training, the
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
from tqdm.auto import tqdm

from trainer.config import DPOConfig
from trainer.divergence import sampled_kl
from trainer.errors import TrainerError
from trainer.loop import accelerator_for, fit
from trainer.losses import dpo_loss
from trainer.models import load_policy, load_tokenizer, pick_device, reference_mode, save_policy_adapter
from trainer.runs import Run
from trainer.sequences import sequence_logprobs
from trainer.tokens import Encoded, encode

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
def reference_logprobs(model: Any, encoded: Sequence[Encoded], pad_id: int, batch_size: int) -> list[float]:
    out: list[float] = []
    model.eval()
    with reference_mode(model):
        for start in tqdm(range(0, len(encoded), batch_size), desc="reference log-probs", unit="batch"):
            out += sequence_logprobs(model, encoded[start : start + batch_size], pad_id).tolist()
    return out


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
) -> DPOResult:
    if not pairs:
        raise TrainerError("DPO needs preference pairs; none were given")
    tokenizer = load_tokenizer(base)
    device = pick_device(cfg.device)
    accelerator = accelerator_for(device)
    model = load_policy(base, parent_adapter, cfg, with_reference=True)
    model.to(accelerator.device)
    pad = int(tokenizer.pad_token_id)

    def items(rows: Sequence[Pair]) -> list[DPOItem]:
        chosen = [encode(tokenizer, p.prompt, p.chosen, cfg.max_length, add_eos=True) for p in rows]
        rejected = [encode(tokenizer, p.prompt, p.rejected, cfg.max_length, add_eos=True) for p in rows]
        ref = reference_logprobs(model, chosen + rejected, pad, cfg.batch_size)
        n = len(rows)
        return [
            DPOItem(c, r, rc, rr, p.weight)
            for c, r, rc, rr, p in zip(chosen, rejected, ref[:n], ref[n:], rows, strict=True)
        ]

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
        max_prompt_tokens=cfg.max_length,
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
    }
    published = kl <= cfg.kl_budget
    if not published:
        result["refused"] = f"KL to the champion {kl:.2f} exceeds the budget {cfg.kl_budget:.2f}"
        log.warning("DPO result not publishable: %s", result["refused"])
    run.succeed(metrics=result, publishable=published)
    return DPOResult(run.output, result, published)
