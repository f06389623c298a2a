"""Supervised fine-tuning (LoRA) on demonstrations: employees' corrections and the golden answers.

Loss: mean negative log-likelihood of the response tokens only (the prompt, with its retrieved
passages, is context, not a target); the response ends with the end-of-turn token so the model learns
to stop. Evaluation is the golden set's answer similarity (trainer/evaluation.py).

A few corrections move a 135M model a long way: 8 epochs over 14 of them put its answers 12 nats (per
answer) from the champion, the whole refresh's budget. With `kl_limit`, SFT keeps the last epoch whose
answers are within that KL of the champion (`KLBound`: measured every `kl_check_every` epochs and at
the end, then a bisection over the saved epochs when one is past the limit; the champion's own weights
when even the first epoch is).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from core.files import atomic_path
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
        bound = KLBound(cfg, tokenizer, accelerator, [d.prompt for d in demonstrations], run.root / "epochs")
        bound.start(model)
    fitted = fit(
        model=model,
        examples=encoded,
        loss_fn=lambda m, b: sft_loss(m, b, pad),
        cfg=cfg,
        run=run,
        accelerator=accelerator,
        desc="SFT",
        after_epoch=None if bound is None else (lambda epoch: bound.after_epoch(model, epoch)),
    )
    if bound is not None:
        bound.settle(model, fitted.steps // fitted.steps_per_epoch)
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
    if bound is not None:
        shutil.rmtree(bound.folder, ignore_errors=True)  # the published adapter is the epoch kept
    return SFTResult(run.output, result)


class KLBound:
    """SFT's KL guard, which measures as few epochs as it can: fresh answers measure the KL to the
    champion (trainer/divergence.py) every `kl_check_every` epochs and after the last one (one
    measurement when every epoch stays within the limit, as usual). Each epoch's trainable weights are
    saved in the run folder; when a measured epoch is past the limit, training stops and a bisection
    over the saved epochs between the last one measured within the limit (epoch 0, the champion itself,
    when none was) and that one finds the last epoch within it (the KL grows with the epochs, noisily).
    Its weights come back before SFT publishes."""

    def __init__(
        self, cfg: SFTConfig, tokenizer: Any, accelerator: Any, prompts: Sequence[str], folder: Path
    ) -> None:
        self.cfg, self.tokenizer, self.accelerator = cfg, tokenizer, accelerator
        self.prompts = list(dict.fromkeys(prompts))
        self.folder = folder  # one file of trainable weights per epoch (0: before training)
        self.kl: dict[int, float] = {0: 0.0}  # epoch -> measured KL; epoch 0 is the reference itself
        self.kept_epochs = 0

    def _path(self, epoch: int) -> Path:
        return self.folder / f"epoch-{epoch:03d}.pt"

    def start(self, model: Any) -> None:
        """Save the weights before training (a resumed run keeps the ones it saved)."""
        if not self._path(0).exists():
            self.keep(model, 0)

    def keep(self, model: Any, epoch: int) -> None:
        """Save the weights after `epoch` epochs (0: the start)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(self._path(epoch)) as tmp:
            torch.save(checkpoint.trainable_state(self.accelerator.unwrap_model(model)), tmp)

    def _load(self, model: Any, epoch: int) -> None:
        state = torch.load(self._path(epoch), map_location="cpu", weights_only=True)
        checkpoint.load_trainable_state(state, self.accelerator.unwrap_model(model))

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
        self.kl[epoch] = kl
        return kl

    def after_epoch(self, model: Any, epoch: int) -> str | None:
        """`fit`'s hook after epoch index `epoch`: save it; measure it when it is due; stop past the limit."""
        done = epoch + 1
        self.keep(model, done)
        if done % max(self.cfg.kl_check_every, 1) and done != self.cfg.epochs:
            return None
        kl = self.measure(model, done)
        if kl > self.cfg.kl_limit:
            return f"kl: {kl:.2f} to the champion after epoch {done}, over the limit {self.cfg.kl_limit:.2f}"
        return None

    def settle(self, model: Any, trained: int) -> None:
        """Put the weights of the last epoch within the limit (of `trained`) back into `model`."""
        limit = self.cfg.kl_limit
        if trained not in self.kl:  # a resumed run: the last epoch was never measured in this process
            self._load(model, trained)
            self.measure(model, trained)
        if self.kl[trained] <= limit:
            self._load(model, trained)  # training may have gone on into an epoch it did not finish
            self.kept_epochs = trained
            return
        within = max(e for e, kl in self.kl.items() if kl <= limit and e < trained)
        over = min(e for e, kl in self.kl.items() if kl > limit and e > within)
        while over - within > 1:  # the last epoch within the limit lies between the two
            mid = (within + over) // 2
            if mid in self.kl:
                kl = self.kl[mid]
            else:
                self._load(model, mid)
                kl = self.measure(model, mid)
            within, over = (mid, over) if kl <= limit else (within, mid)
        self._load(model, within)
        self.kept_epochs = within

    def summary(self) -> dict[str, Any]:
        return {
            "kl_limit": self.cfg.kl_limit,
            "kl_by_epoch": {str(e): kl for e, kl in sorted(self.kl.items()) if e > 0},
            "kl_measurements": len(self.kl) - 1,
            "epochs_kept": self.kept_epochs,
        }
