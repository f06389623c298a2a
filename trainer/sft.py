"""Supervised fine-tuning (LoRA) on demonstrations: employees' corrections and the golden answers.

Loss: mean negative log-likelihood of the response tokens only (the prompt, with its retrieved
passages, is context, not a target); the response ends with the end-of-turn token so the model learns
to stop. Evaluation is the golden set's answer similarity (trainer/evaluation.py).

A few corrections move a 135M model a long way: 8 epochs over 14 of them put its answers 12 nats (per
answer) from the champion, the whole refresh's budget. With `kl_limit`, fresh answers measure the KL
to the champion (trainer/divergence.py) after every epoch, and SFT stops at the first epoch past the
limit, keeping the weights of the epoch before it (the champion's own when the first one is past).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from trainer import checkpoint
from trainer.config import SFTConfig
from trainer.divergence import sampled_kl
from trainer.errors import TrainerError
from trainer.loop import accelerator_for, fit
from trainer.models import load_policy, load_tokenizer, pick_device, save_policy_adapter
from trainer.runs import Run
from trainer.sequences import batch, response_logprobs
from trainer.tokens import Encoded, encode


class Example(Protocol):
    @property
    def prompt(self) -> str: ...

    @property
    def completion(self) -> str: ...


def sft_loss(model: Any, examples: Sequence[Encoded], pad_id: int) -> tuple[torch.Tensor, dict[str, float]]:
    device = next(model.parameters()).device
    ids, attention, response = batch(examples, pad_id, device)
    logps, mask = response_logprobs(model, ids, attention, response)
    tokens = mask.sum().clamp(min=1)
    loss = -(logps * mask).sum() / tokens
    return loss, {"loss": float(loss.detach()), "tokens": float(tokens)}


@dataclass(frozen=True)
class SFTResult:
    adapter: Path
    metrics: dict[str, Any]


def train_sft(
    *, base: str, parent_adapter: Path | None, cfg: SFTConfig, run: Run, demonstrations: Sequence[Example]
) -> SFTResult:
    if not demonstrations:
        raise TrainerError("SFT needs demonstrations (corrections or golden answers); none were given")
    tokenizer = load_tokenizer(base)
    device = pick_device(cfg.device)
    accelerator = accelerator_for(device)
    model = load_policy(base, parent_adapter, cfg, with_reference=cfg.kl_limit > 0)
    encoded = [
        encode(tokenizer, d.prompt, d.completion, cfg.max_length, add_eos=True) for d in demonstrations
    ]
    pad = int(tokenizer.pad_token_id)
    bound = None
    if cfg.kl_limit > 0:
        bound = KLBound(cfg, tokenizer, accelerator, [d.prompt for d in demonstrations])
        bound.keep(model)
    fitted = fit(
        model=model,
        examples=encoded,
        loss_fn=lambda m, b: sft_loss(m, b, pad),
        cfg=cfg,
        run=run,
        accelerator=accelerator,
        desc="SFT",
        after_epoch=None if bound is None else (lambda epoch: bound.check(model, epoch)),
    )
    accelerator.wait_for_everyone()
    model = accelerator.unwrap_model(model)
    if not accelerator.is_main_process:  # the main process evaluates and publishes
        return SFTResult(run.output, {})
    with run.publishing() as staging:
        save_policy_adapter(model, staging)
    result = {
        "steps": fitted.steps,
        "seconds": fitted.seconds,
        "examples_per_s": fitted.examples_per_s,
        "final": fitted.last,
        "demonstrations": len(demonstrations),
        "stopped_by": fitted.stopped_by,
        **({} if bound is None else bound.summary()),
    }
    run.succeed(metrics=result)
    return SFTResult(run.output, result)


class KLBound:
    """SFT's KL guard: after each epoch, `kl_samples` fresh answers to the demonstrations' prompts
    measure the policy's KL to the champion (the frozen reference adapter); past `kl_limit` the weights
    of the last epoch within it come back."""

    def __init__(self, cfg: SFTConfig, tokenizer: Any, accelerator: Any, prompts: Sequence[str]) -> None:
        self.cfg, self.tokenizer, self.accelerator = cfg, tokenizer, accelerator
        self.prompts = list(dict.fromkeys(prompts))
        self.kept: list[dict[str, torch.Tensor]] = []
        self.kept_epochs = 0
        self.kl_by_epoch: list[float] = []

    def keep(self, model: Any) -> None:
        self.kept = checkpoint.trainable_state(self.accelerator.unwrap_model(model))

    def measure(self, model: Any, epoch: int) -> float:
        unwrapped = self.accelerator.unwrap_model(model)
        was_training = unwrapped.training
        with self.accelerator.autocast():
            kl = sampled_kl(
                unwrapped,
                self.tokenizer,
                self.prompts,
                samples=self.cfg.kl_samples,
                max_new_tokens=self.cfg.kl_max_new_tokens,
                max_prompt_tokens=max(self.cfg.max_length - self.cfg.kl_max_new_tokens, 1),
                seed=self.cfg.seed * 7919 + epoch,
            )
        unwrapped.train(was_training)
        if self.accelerator.num_processes > 1:  # every process takes the same decision
            kl = float(self.accelerator.reduce(torch.tensor([kl], device=self.accelerator.device), "mean")[0])
        return kl

    def check(self, model: Any, epoch: int) -> str | None:
        kl = self.measure(model, epoch)
        self.kl_by_epoch.append(kl)
        if kl > self.cfg.kl_limit:  # back to the last epoch within the limit (fit then checkpoints it)
            checkpoint.load_trainable_state(self.kept, self.accelerator.unwrap_model(model))
            limit = self.cfg.kl_limit
            return f"kl: {kl:.2f} to the champion after epoch {epoch + 1}, over the limit {limit:.2f}"
        self.keep(model)
        self.kept_epochs = epoch + 1
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "kl_limit": self.cfg.kl_limit,
            "kl_by_epoch": self.kl_by_epoch,
            "epochs_kept": self.kept_epochs,
        }
