"""Supervised fine-tuning (LoRA) on demonstrations: employees' corrections and the golden answers.

Loss: mean negative log-likelihood of the response tokens only (the prompt, with its retrieved
passages, is context, not a target); the response ends with the end-of-turn token so the model learns
to stop. Evaluation is the golden set's answer similarity (trainer/evaluation.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from trainer.config import SFTConfig
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
    model = load_policy(base, parent_adapter, cfg, with_reference=False)
    encoded = [
        encode(tokenizer, d.prompt, d.completion, cfg.max_length, add_eos=True) for d in demonstrations
    ]
    pad = int(tokenizer.pad_token_id)
    fitted = fit(
        model=model,
        examples=encoded,
        loss_fn=lambda m, b: sft_loss(m, b, pad),
        cfg=cfg,
        run=run,
        accelerator=accelerator,
        desc="SFT",
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
    }
    run.succeed(metrics=result)
    return SFTResult(run.output, result)
