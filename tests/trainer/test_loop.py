"""trainer.loop.fit on a linear model: the learning-rate schedule, gradient accumulation, the data order."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.config import TrainConfig
from trainer.loop import accelerator_for, adamw, epoch_order, fit
from trainer.models import pick_device
from trainer.runs import Run

Example = tuple[torch.Tensor, torch.Tensor]


def examples() -> list[Example]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(16, generator=generator)
    return list(zip(x, y, strict=True))


def mse(model: Any, batch: Sequence[Example]) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    loss = ((model(x).squeeze(-1) - y) ** 2).mean()
    return loss, {"loss": float(loss.detach())}


def train_linear(root: Path, **changes: Any) -> tuple[torch.nn.Linear, Run]:
    settings = {"device": "cpu", "batch_size": 4, "epochs": 2, "learning_rate": 0.1, "warmup_ratio": 0.25}
    cfg = TrainConfig(**{**settings, **changes})
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    run = Run.open(root, "test", cfg.to_json())
    accelerator = accelerator_for(pick_device("cpu"))
    fit(model=model, examples=examples(), loss_fn=mse, cfg=cfg, run=run, accelerator=accelerator, desc="test")
    return model, run


def test_warm_up_then_linear_decay_to_a_tenth(tmp_path: Path) -> None:
    _, run = train_linear(tmp_path / "run")
    logged = run.metrics()
    assert [m["step"] for m in logged] == list(range(1, 9))  # 16 examples / 4 = 4 steps × 2 epochs
    assert [m["epoch"] for m in logged] == [0, 0, 0, 0, 1, 1, 1, 1]
    # 8 steps, warm-up int(8 × 0.25) = 2; the lr logged after step s is the one step s + 1 uses:
    # (s + 1) / 3 while s < 2, then max(0.1, 1 - 0.9 (s - 2) / 6)
    factors = [2 / 3, 1.0, 0.85, 0.7, 0.55, 0.4, 0.25, 0.1]
    assert [m["lr"] for m in logged] == pytest.approx([0.1 * f for f in factors])
    assert logged[-1]["loss"] < logged[0]["loss"]


def test_gradient_accumulation_equals_the_bigger_batch(tmp_path: Path) -> None:
    big, big_run = train_linear(tmp_path / "big", batch_size=8, max_grad_norm=100.0)
    accumulated, run = train_linear(tmp_path / "accumulated", batch_size=4, grad_accum=2, max_grad_norm=100.0)
    assert len(run.metrics()) == 4  # 2 micro-batches per step
    # the same gradients, not half of them (AdamW would hide a scale, the clipping threshold would not)
    norms = [m["grad_norm"] for m in big_run.metrics()]
    assert [m["grad_norm"] for m in run.metrics()] == pytest.approx(norms, rel=1e-5)
    losses = [m["loss"] for m in big_run.metrics()]
    assert [m["loss"] for m in run.metrics()] == pytest.approx(losses, rel=1e-5)
    assert torch.allclose(big.weight, accumulated.weight, atol=1e-6)
    assert torch.allclose(big.bias, accumulated.bias, atol=1e-6)


def test_epoch_order_depends_only_on_seed_and_epoch() -> None:
    assert epoch_order(10, seed=3, epoch=1) == epoch_order(10, seed=3, epoch=1)
    assert sorted(epoch_order(10, seed=3, epoch=1)) == list(range(10))
    assert epoch_order(10, seed=3, epoch=1) != epoch_order(10, seed=3, epoch=2)
    assert epoch_order(10, seed=3, epoch=1) != epoch_order(10, seed=4, epoch=1)


def test_fit_refuses_no_examples_and_no_trainable_parameters(tmp_path: Path) -> None:
    cfg = TrainConfig(device="cpu")
    run = Run.open(tmp_path / "run", "test", cfg.to_json())
    acc = accelerator_for(pick_device("cpu"))

    def fit_on(model: torch.nn.Module, data: list[Example]) -> object:
        return fit(model=model, examples=data, loss_fn=mse, cfg=cfg, run=run, accelerator=acc, desc="")

    with pytest.raises(ValueError, match="no training examples"):
        fit_on(torch.nn.Linear(3, 1), [])
    with pytest.raises(ValueError, match="no trainable"):
        fit_on(torch.nn.Linear(3, 1).requires_grad_(False), examples())


def test_adamw_is_fused_on_cpu_and_takes_the_same_step_as_the_loop() -> None:
    torch.manual_seed(0)
    weights = [torch.nn.Parameter(torch.randn(4, 3)), torch.nn.Parameter(torch.randn(5))]
    twins = [torch.nn.Parameter(w.detach().clone()) for w in weights]
    fused = adamw(weights, lr=0.1, weight_decay=0.01)
    plain = torch.optim.AdamW(twins, lr=0.1, weight_decay=0.01)
    assert fused.param_groups[0]["fused"] is True
    for _ in range(3):
        for params, optimizer in ((weights, fused), (twins, plain)):
            optimizer.zero_grad()
            sum((p**2).sum() for p in params).backward()  # type: ignore[union-attr]
            optimizer.step()
    for w, t in zip(weights, twins, strict=True):
        assert torch.allclose(w, t, atol=1e-6)
        assert not torch.equal(w, torch.zeros_like(w))
