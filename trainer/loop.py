"""The supervised training loop shared by SFT, the reward model and DPO.

Examples are prepared up front (these datasets are small: hundreds to thousands of rows). Each epoch
visits them in an order drawn from a generator seeded with (seed, epoch), so the order does not depend
on how many times the process was started; a resumed run skips the micro-batches it already consumed
and restores weights, optimizer, scheduler and RNG states from the checkpoint. Accelerate handles
devices, mixed precision (bf16 on GPU) and several processes (`accelerate launch`): each process takes
every n-th batch.

Progress (a bar and RUN/progress.json, trainer/progress.py) is updated after every optimizer step. Between
steps the loop honours an operator's stop request (trainer/progress.py `request_stop`) and an optional
time budget: it saves a checkpoint and stops. A stop request raises `Stopped` (the run stays resumable
and publishes nothing); the time budget ends training early and says so in `Fitted.stopped_by`.
With `lengths`, each epoch's shuffled order is grouped by length (`grouped_order`), so a batch pads
little; the batches themselves still come in random order.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import torch

from trainer import checkpoint
from trainer.config import TrainConfig
from trainer.models import Device
from trainer.progress import Progress, Stopped
from trainer.runs import Run

T = TypeVar("T")
LossFn = Callable[[Any, Sequence[T]], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class Fitted(Generic[T]):
    steps: int
    seconds: float
    examples_per_s: float
    last: dict[str, float]
    planned_steps: int = 0
    stopped_by: str | None = None  # "time budget" when training ended before `planned_steps`
    steps_per_epoch: int = 1


def accelerator_for(device: Device) -> Any:
    """`fit` accumulates gradients itself (each micro-batch's loss divided by `grad_accum`), so accelerate's
    own gradient accumulation, whose `backward` would divide the loss a second time, stays off."""
    from accelerate import Accelerator

    return Accelerator(cpu=device.device == "cpu", mixed_precision=device.mixed_precision)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return [int(i) for i in torch.randperm(n, generator=generator)]


def grouped_order(
    order: Sequence[int], lengths: Sequence[int], batch_size: int, seed: int, epoch: int, window: int = 16
) -> list[int]:
    """`order` regrouped so each batch holds examples of similar length: every run of `window` batches'
    worth of examples (in `order`) is sorted by length and cut into batches, and all batches are then
    shuffled (seeded by seed and epoch). Same examples, same number of batches, much less padding."""
    span = max(1, window * batch_size)
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: (lengths[i], i))
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    # the last, possibly short, batch stays last: every other batch is full
    full, tail = (batches[:-1], batches[-1:]) if len(order) % batch_size else (batches, [])
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7)
    shuffled = [full[int(i)] for i in torch.randperm(len(full), generator=generator)]
    return [i for batch in shuffled + tail for i in batch]


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
    lengths: Sequence[int] | None = None,
    time_budget_s: float = 0.0,
    after_epoch: Callable[[int], str | None] | None = None,
) -> Fitted[T]:
    """Train the parameters of `model` that require grad on `examples`; checkpoints in `run`.

    `lengths` (one per example) groups batches by length; `time_budget_s` > 0 stops after the step that
    passes it (checkpoint saved). `after_epoch(epoch)` runs after each epoch's last step; a reason it
    returns ends training there (`stopped_by`). Raises `Stopped` when an operator asked the run to stop."""
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
    progress = Progress(
        desc, total, folder=run.root, initial=step, enabled=accelerator.is_main_process, unit="step"
    )
    micro_per_step = cfg.grad_accum
    stopped_by: str | None = None
    orders: dict[int, list[int]] = {}
    while step < total:
        epoch, in_epoch = divmod(step, steps_per_epoch)
        if epoch not in orders:
            order = epoch_order(len(examples), cfg.seed, epoch)
            if lengths is not None:
                order = grouped_order(order, lengths, cfg.batch_size, cfg.seed, epoch)
            orders = {epoch: order}
        order = orders[epoch]
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
        progress.update(1, **{k: v for k, v in sums.items() if k in ("loss", "accuracy")})
        stop = progress.stop_requested() is not None
        over = bool(time_budget_s) and time.perf_counter() - started >= time_budget_s and step < total
        if accelerator.num_processes > 1:  # every process must take the same decision
            flags = accelerator.reduce(torch.tensor([float(stop), float(over)]), reduction="sum")
            stop, over = bool(flags[0] > 0), bool(flags[1] > 0)
        if step % cfg.checkpoint_every == 0 or step == total or stop or over:
            save()
        if stop:
            progress.close("stopped")
            raise Stopped(
                f"{desc}: stopped on request after step {step} of {total}; the checkpoint in "
                f"{run.checkpoint_dir} resumes it"
            )
        if over:
            stopped_by = "time budget"
            break
        if after_epoch is not None and step % steps_per_epoch == 0:
            reason = after_epoch(epoch)
            if reason:
                stopped_by = reason
                save()
                break
    progress.close()
    seconds = time.perf_counter() - started
    return Fitted(
        steps=step,
        seconds=seconds,
        examples_per_s=seen / seconds if seconds else 0.0,
        last=last,
        planned_steps=total,
        stopped_by=stopped_by,
        steps_per_epoch=steps_per_epoch,
    )
