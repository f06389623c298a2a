"""trainer.progress (the bar + progress.json, stop requests) and the loop's use of it: a stop request
saves a checkpoint and raises `Stopped`, the run resumes where it stopped, a time budget ends training
early, and length-grouped batches keep every example."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.config import TrainConfig
from trainer.loop import accelerator_for, epoch_order, fit, grouped_order
from trainer.models import pick_device
from trainer.progress import Progress, Stopped, eta_seconds, read_progress, request_stop, stop_request
from trainer.runs import Run

Example = tuple[torch.Tensor, torch.Tensor]


def test_eta_by_hand() -> None:
    assert eta_seconds(10, 40, 5.0) == pytest.approx(15.0)  # 2 per second, 30 left
    assert eta_seconds(40, 40, 5.0) == 0.0
    assert eta_seconds(0, 40, 5.0) is None  # no rate yet
    assert eta_seconds(3, 0, 5.0) is None  # no total


def test_progress_file_tracks_the_phase_and_keeps_finished_ones(tmp_path: Path) -> None:
    with Progress("training", 4, folder=tmp_path, every_s=0.0, enabled=True) as progress:
        progress.update(1, loss=0.5)
        mid = read_progress(tmp_path)
        assert mid is not None
        assert (mid["phase"], mid["done"], mid["total"], mid["state"]) == ("training", 1, 4, "running")
        assert mid["metrics"] == {"loss": 0.5}
        assert mid["eta_s"] is not None and mid["eta_s"] >= 0
        progress.update(3)
    with Progress("scoring", 10, folder=tmp_path, unit="seq", every_s=0.0) as progress:
        progress.update(10)
    final = read_progress(tmp_path)
    assert final is not None and final["phase"] == "scoring" and final["state"] == "finished"
    assert [(p["phase"], p["done"], p["state"]) for p in final["finished_phases"]] == [
        ("training", 4, "finished"),
        ("scoring", 10, "finished"),
    ]


def test_a_stop_request_counts_only_after_the_phase_started(tmp_path: Path) -> None:
    run = tmp_path / "refresh" / "reward"
    run.mkdir(parents=True)
    request_stop(tmp_path / "refresh")  # a refresh's folder: its phases see it
    assert stop_request(run, since_ts=0.0) is not None
    assert stop_request(run, since_ts=time.time() + 60) is None  # an older request: a resumed run goes on
    assert stop_request(tmp_path / "other", since_ts=0.0) is None


def examples(n: int = 16) -> list[Example]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=generator)
    return list(zip(x, x @ torch.tensor([1.0, -2.0, 0.5]), strict=True))


def mse(model: Any, batch: Sequence[Example]) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    loss = ((model(x).squeeze(-1) - y) ** 2).mean()
    return loss, {"loss": float(loss.detach())}


def fit_linear(root: Path, loss_fn: Any = mse, **kwargs: Any) -> Any:
    cfg = TrainConfig(device="cpu", batch_size=4, epochs=2, learning_rate=0.1, checkpoint_every=100)
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    run = Run.open(root, "test", cfg.to_json())
    accelerator = accelerator_for(pick_device("cpu"))
    fitted = fit(
        model=model, examples=examples(), loss_fn=loss_fn, cfg=cfg, run=run, accelerator=accelerator,
        desc="test", **kwargs,
    )  # fmt: skip
    return model, run, fitted


def test_stop_request_saves_a_checkpoint_and_the_run_resumes(tmp_path: Path) -> None:
    root = tmp_path / "run"
    calls = {"n": 0}

    def stop_after_three(model: Any, batch: Sequence[Example]) -> tuple[torch.Tensor, dict[str, float]]:
        calls["n"] += 1
        if calls["n"] == 3:
            request_stop(root)  # the operator asks during step 3
        return mse(model, batch)

    with pytest.raises(Stopped, match="after step 3 of 8"):
        fit_linear(root, stop_after_three)
    assert (root / "checkpoint").exists()  # checkpoint_every is 100: saved because of the stop
    progress = read_progress(root)
    assert progress is not None and progress["state"] == "stopped" and progress["done"] == 3
    assert [m["step"] for m in Run(root).metrics()] == [1, 2, 3]
    # resumed (the old request predates the new phase): steps 4..8, the same weights as one go
    resumed, _, fitted = fit_linear(root)
    assert fitted.steps == 8 and fitted.stopped_by is None
    straight, _, _ = fit_linear(tmp_path / "straight")
    assert torch.allclose(resumed.weight, straight.weight, atol=1e-6)


def test_time_budget_ends_training_early_and_says_so(tmp_path: Path) -> None:
    def slow(model: Any, batch: Sequence[Example]) -> tuple[torch.Tensor, dict[str, float]]:
        time.sleep(0.05)
        return mse(model, batch)

    _, run, fitted = fit_linear(tmp_path / "run", slow, time_budget_s=0.01)
    assert (fitted.steps, fitted.planned_steps, fitted.stopped_by) == (1, 8, "time budget")
    assert (run.root / "checkpoint").exists()
    _, _, whole = fit_linear(tmp_path / "whole", slow, time_budget_s=60.0)
    assert (whole.steps, whole.stopped_by) == (8, None)


def test_grouped_order_keeps_every_example_and_pads_less() -> None:
    lengths = [7, 100, 3, 55, 90, 12, 60, 8, 95, 5, 50, 4, 99, 58, 6, 91, 2]  # 17 examples
    order = epoch_order(len(lengths), 0, 0)
    grouped = grouped_order(order, lengths, batch_size=4, seed=0, epoch=0, window=4)
    assert sorted(grouped) == list(range(17))
    assert grouped == grouped_order(order, lengths, batch_size=4, seed=0, epoch=0, window=4)

    def padded(o: list[int]) -> int:
        return sum(4 * max(lengths[i] for i in o[k : k + 4]) for k in range(0, len(o), 4))

    assert padded(grouped) < padded(order)
    # within the first window (4 batches = 16 examples) each batch is a run of the sorted lengths
    first = sorted(order[:16], key=lambda i: (lengths[i], i))
    batches = {tuple(first[k : k + 4]) for k in range(0, 16, 4)}
    assert {tuple(grouped[k : k + 4]) for k in range(0, 16, 4)} == batches
    assert grouped[16:] == order[16:]  # the short last batch stays last


def test_progress_json_is_valid_json_after_every_write(tmp_path: Path) -> None:
    progress = Progress("p", 3, folder=tmp_path, every_s=0.0)
    for _ in range(3):
        progress.update(1)
        json.loads((tmp_path / "progress.json").read_text())
    progress.close()
