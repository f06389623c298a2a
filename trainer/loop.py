"""The supervised training loop shared by SFT, the reward model and DPO.

Examples are prepared up front (these datasets are small: hundreds to thousands of rows). Each epoch
visits them in an order drawn from a generator seeded with (seed, epoch), so the order does not depend
on how many times the process was started; a resumed run skips the micro-batches it already consumed
and restores weights, optimizer, scheduler and RNG states from the checkpoint. Accelerate handles
devices, mixed precision (bf16 on GPU) and several processes (`accelerate launch`): each process takes
every n-th batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch
from tqdm.auto import tqdm

from trainer import checkpoint
from trainer.config import TrainConfig
from trainer.models import Device
from trainer.runs import Run

T = TypeVar("T")
LossFn = Callable[[Any, Sequence[T]], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class Fitted(Generic[T]):
    steps: int
    seconds: float
    examples_per_s: float
    last: dict[str, float]


def accelerator_for(device: Device) -> Any:
    """`fit` accumulates gradients itself (each micro-batch's loss divided by `grad_accum`), so accelerate's
    own gradient accumulation, whose `backward` would divide the loss a second time, stays off."""
    from accelerate import Accelerator

    return Accelerator(cpu=device.device == "cpu", mixed_precision=device.mixed_precision)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [int(i) for i in torch.randperm(n, generator=generator)]


def adamw(params: list[torch.nn.Parameter], *, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW, fused (one kernel over all tensors) when every parameter's device supports it.

    The per-tensor loop of the default implementation costs ~6x the fused step over the ~240 small LoRA
    tensors of a SmolLM2 adapter on CPU; the update is the same AdamW."""
    fused = all(p.device.type in ("cpu", "cuda") and p.dtype.is_floating_point for p in params)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused)


def fit(
    *,
    model: Any,
    examples: Sequence[T],
    loss_fn: LossFn[T],
    cfg: TrainConfig,
    run: Run,
    accelerator: Any,
    desc: str,
    extra_state: dict[str, Any] | None = None,
) -> Fitted[T]:
    """Train the parameters of `model` that require grad on `examples`; checkpoints in `run`."""
    if not examples:
        raise ValueError("no training examples")
    batches_per_epoch = math.ceil(len(examples) / cfg.batch_size)
    per_step = cfg.grad_accum * accelerator.num_processes  # micro-batches per optimizer step
    steps_per_epoch = max(1, batches_per_epoch // per_step)
    total = steps_per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters")
    optimizer = adamw(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    warmup = int(total * cfg.warmup_ratio)

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to 10%
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.1, 1.0 - 0.9 * (step - warmup) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer = accelerator.prepare(model, optimizer)

    step = 0
    state = checkpoint.load(run.checkpoint_dir)
    if state is not None:
        checkpoint.load_trainable_state(state["trainable"], accelerator.unwrap_model(model))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        step = int(state["step"])
        if extra_state is not None:
            extra_state.update(state.get("extra", {}))
    if accelerator.is_main_process:
        run.truncate_metrics(step)  # steps past the checkpoint (or all, without one) are logged again

    def save() -> None:
        if accelerator.is_main_process:
            checkpoint.save(
                run.checkpoint_dir,
                {
                    "step": step,
                    "trainable": checkpoint.trainable_state(accelerator.unwrap_model(model)),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "rng": checkpoint.rng_state(),
                    "extra": dict(extra_state or {}),
                },
            )

    model.train()
    started, seen, last = time.perf_counter(), 0, {}
    bar = tqdm(total=total, initial=step, desc=desc, unit="step", disable=not accelerator.is_main_process)
    micro_per_step = cfg.grad_accum
    while step < total:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        order = epoch_order(len(examples), cfg.seed, epoch)
        sums: dict[str, float] = {}
        for micro in range(micro_per_step):
            # every process takes its own micro-batch; all of them do the same number of passes (DDP)
            index = (
                in_epoch * micro_per_step + micro
            ) * accelerator.num_processes + accelerator.process_index
            picked = order[index * cfg.batch_size : (index + 1) * cfg.batch_size]
            if not picked:
                continue
            batch = [examples[i] for i in picked]
            with accelerator.autocast():
                loss, values = loss_fn(model, batch)
            accelerator.backward(loss / micro_per_step)
            seen += len(batch)
            for key, value in values.items():
                sums[key] = sums.get(key, 0.0) + value / micro_per_step
        grad_norm = accelerator.clip_grad_norm_(params, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        last = {**sums, "grad_norm": float(grad_norm), "lr": scheduler.get_last_lr()[0], "epoch": epoch}
        if accelerator.is_main_process and step % cfg.log_every == 0:
            run.log(step, last)
        bar.update(1)
        bar.set_postfix({k: f"{v:.3g}" for k, v in sums.items() if k in ("loss", "accuracy")})
        if step % cfg.checkpoint_every == 0 or step == total:
            save()
    bar.close()
    seconds = time.perf_counter() - started
    return Fitted(steps=step, seconds=seconds, examples_per_s=seen / seconds if seconds else 0.0, last=last)
