"""trainer.checkpoint: a round trip restores weights and every RNG; a broken save never replaces the last."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainer import checkpoint


def draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(4).tolist()


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    draws()  # move away from the seeded start
    checkpoint.save(tmp_path, {"step": 7, "rng": checkpoint.rng_state()})
    expected = draws()
    draws()  # the process goes on drawing before it is interrupted
    state = checkpoint.load(tmp_path)
    assert state is not None and state["step"] == 7
    checkpoint.set_rng_state(state["rng"])
    assert draws() == expected


def test_trainable_state_holds_only_the_trainable_parameters(tmp_path: Path) -> None:
    torch.manual_seed(0)
    first = torch.nn.Linear(3, 3)
    model = torch.nn.Sequential(first, torch.nn.Linear(3, 1))
    first.weight.requires_grad = False
    saved = checkpoint.trainable_state(model)
    assert sorted(saved[0]) == ["0.bias", "1.bias", "1.weight"]
    checkpoint.save(tmp_path, {"trainable": saved})
    frozen = first.weight.detach().clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    state = checkpoint.load(tmp_path)
    assert state is not None
    checkpoint.load_trainable_state(state["trainable"], model)
    for name, value in saved[0].items():
        assert torch.equal(dict(model.named_parameters())[name], value)
    assert torch.equal(first.weight, frozen + 1.0)  # not in the checkpoint: untouched
    with pytest.raises(ValueError, match="lacks"):
        checkpoint.load_trainable_state([{"2.weight": torch.zeros(1)}], model)


def test_no_checkpoint_loads_as_none(tmp_path: Path) -> None:
    assert checkpoint.load(tmp_path / "missing") is None


def test_an_interrupted_save_never_replaces_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoint.save(tmp_path, {"step": 1, "weights": torch.ones(3)})

    def dies_halfway(obj: Any, fh: Any) -> None:
        fh.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # stands in for a kill in the middle of writing

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(tmp_path, {"step": 2, "weights": torch.zeros(3)})
    monkeypatch.undo()
    assert [p.name for p in tmp_path.glob(".state.pt.*.tmp")]  # the half-written file is left aside
    (tmp_path / ".state.pt.99999.tmp").write_bytes(b"junk of another killed process")
    state = checkpoint.load(tmp_path)
    assert state is not None and state["step"] == 1 and torch.equal(state["weights"], torch.ones(3))

    checkpoint.save(tmp_path, {"step": 3, "weights": torch.zeros(3)})  # the next save goes through
    state = checkpoint.load(tmp_path)
    assert state is not None and state["step"] == 3
