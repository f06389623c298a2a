"""KTO on thumbs, beside DPO on pairs: unpaired (prompt, answer, thumbs up or down), no pairs needed.

Each thumb is an answer labelled desirable (up) or undesirable (down). The loss (trainer.losses
`kto_loss`) raises the policy's log-ratio to the champion on desirable answers and lowers it on
undesirable ones, measured against a reference point z₀: the KL to the champion estimated on answers
paired with prompts they were not written for (each thumb's prompt with the next thumb's answer in the
batch), as in Ethayarajh et al. 2024. The reference is the champion, on the same backbone as the
policy (trainer.models), its log-probs computed once before training under the training autocast, like
DPO's. After training, the policy's KL to the champion is measured on fresh samples; above `kl_budget`
the adapter is kept but not published.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from trainer.config import KTOConfig
from trainer.divergence import sampled_kl
from trainer.dpo import reference_logprobs
from trainer.errors import TrainerError
from trainer.loop import accelerator_for, fit
from trainer.losses import kto_loss, kto_reference_point
from trainer.models import load_policy, load_tokenizer, pick_device, save_policy_adapter, set_reference
from trainer.runs import Run
from trainer.sequences import sequence_logprobs
from trainer.tokens import Encoded, derive_max_length, encode

log = logging.getLogger(__name__)


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
class KTOItem:
    answer: Encoded  # the prompt and its own answer
    mismatched: Encoded  # the prompt and another example's answer (for the reference point)
    ref_answer: float
    ref_mismatched: float
    desirable: bool
    weight: float


def encode_thumbs(tokenizer: Any, thumbs: Sequence[Thumb], max_length: int) -> list[tuple[Encoded, Encoded]]:
    """(prompt + its answer, prompt + the next thumb's answer) of each thumb, fitted to the budget by
    dropping passages (trainer.tokens.encode). The mismatched answer of the last thumb is the first's."""
    n = len(thumbs)
    return [
        (
            encode(tokenizer, t.prompt, t.completion, max_length, add_eos=True),
            encode(tokenizer, t.prompt, thumbs[(i + 1) % n].completion, max_length, add_eos=True),
        )
        for i, t in enumerate(thumbs)
    ]


def thumb_items(
    model: Any, tokenizer: Any, thumbs: Sequence[Thumb], max_length: int, batch_size: int, accelerator: Any
) -> list[KTOItem]:
    encoded = encode_thumbs(tokenizer, thumbs, max_length)
    answers, mismatched = [a for a, _ in encoded], [m for _, m in encoded]
    ref = reference_logprobs(
        model, answers + mismatched, int(tokenizer.pad_token_id), batch_size, accelerator
    )
    n = len(thumbs)
    return [
        KTOItem(a, m, ra, rm, bool(t.label), t.weight)
        for a, m, ra, rm, t in zip(answers, mismatched, ref[:n], ref[n:], thumbs, strict=True)
    ]


def kto_batch_loss(
    model: Any, items: Sequence[KTOItem], pad_id: int, cfg: KTOConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    logps = sequence_logprobs(model, [i.answer for i in items], pad_id)  # (batch,)
    with torch.no_grad():
        mismatched = sequence_logprobs(model, [i.mismatched for i in items], pad_id)
    z0 = kto_reference_point(mismatched.float(), logps.new_tensor([i.ref_mismatched for i in items]).float())
    desirable = torch.tensor([i.desirable for i in items], device=logps.device)
    loss, rewards = kto_loss(
        logps.float(),
        logps.new_tensor([i.ref_answer for i in items]).float(),
        desirable,
        z0,
        cfg.beta,
        cfg.desirable_weight,
        cfg.undesirable_weight,
        logps.new_tensor([i.weight for i in items]).float(),
    )
    up, down = rewards[desirable], rewards[~desirable]
    stats = {"loss": float(loss.detach()), "kl_reference_point": float(z0)}
    if len(up):
        stats["reward_up"] = float(up.mean())
    if len(down):
        stats["reward_down"] = float(down.mean())
    if len(up) and len(down):
        stats["margin"] = stats["reward_up"] - stats["reward_down"]
    return loss, stats


@dataclass(frozen=True)
class KTOResult:
    adapter: Path
    metrics: dict[str, Any]
    published: bool = True  # False when the KL to the champion exceeds the budget


def train_kto(
    *,
    base: str,
    parent_adapter: Path | None,
    cfg: KTOConfig,
    run: Run,
    thumbs: Sequence[Thumb],
    heldout: Sequence[Thumb] = (),
    reference_adapter: Path | str | None = "parent",
) -> KTOResult:
    """`reference_adapter`: the champion's adapter (None: the bare base) when `parent_adapter` is
    another one; "parent" = the parent is the reference."""
    if len(thumbs) < 2:
        raise TrainerError(f"KTO needs at least 2 thumbs (votes on answers); got {len(thumbs)}")
    if len({bool(t.label) for t in thumbs}) < 2:
        log.warning("KTO on thumbs of one kind only (all up or all down): it can only push one way")
    tokenizer = load_tokenizer(base)
    device = pick_device(cfg.device)
    accelerator = accelerator_for(device)
    model = load_policy(base, parent_adapter, cfg, with_reference=True)
    if reference_adapter != "parent" and reference_adapter != parent_adapter:
        set_reference(model, None if reference_adapter is None else Path(reference_adapter))
    model.to(accelerator.device)
    pad = int(tokenizer.pad_token_id)
    max_length = cfg.max_length or derive_max_length(
        tokenizer, [t.prompt for t in thumbs], cfg.response_tokens
    )
    run.update(max_length=max_length)

    def items(rows: Sequence[Thumb]) -> list[KTOItem]:
        return thumb_items(model, tokenizer, rows, max_length, cfg.batch_size, accelerator)

    train_items = items(thumbs)
    heldout_items = items(heldout) if len(heldout) >= 2 else []
    fitted = fit(
        model=model,
        examples=train_items,
        loss_fn=lambda m, b: kto_batch_loss(m, b, pad, cfg),
        cfg=cfg,
        run=run,
        accelerator=accelerator,
        desc="KTO",
    )
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if not accelerator.is_main_process:  # the main process evaluates and publishes
        return KTOResult(run.output, {})
    model.eval()
    evaluation: dict[str, float] = {}
    if heldout_items:
        with torch.no_grad(), accelerator.autocast():
            _, evaluation = kto_batch_loss(model, heldout_items, pad, cfg)
    prompts = list(dict.fromkeys(t.prompt for t in [*heldout, *thumbs]))  # held-out prompts first
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
        "thumbs": len(thumbs),
        "thumbs_up": sum(bool(t.label) for t in thumbs),
        "kl_to_champion": kl,
        "kl_budget": cfg.kl_budget,
        "max_length": max_length,
    }
    published = kl <= cfg.kl_budget
    if not published:
        result["refused"] = f"KL to the champion {kl:.2f} exceeds the budget {cfg.kl_budget:.2f}"
        log.warning("KTO result not publishable: %s", result["refused"])
    run.succeed(metrics=result, publishable=published)
    return KTOResult(run.output, result, published)
