"""Resumable checkpoints: trainable weights, optimizer, scheduler, counters and every RNG, in one file.

A checkpoint is written to a temporary file, fsynced and renamed over the previous one, so a run killed
at any point (kill -9) finds either the old checkpoint or the new one, never half of one. Restoring the
RNG states as well as the weights makes a resumed run continue exactly as the uninterrupted one would
(same seed, same data order, same samples).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.files import fsync_dir

FILE = "state.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(*modules: torch.nn.Module) -> list[dict[str, torch.Tensor]]:
    """The parameters that train (LoRA, heads), per module, detached on the CPU."""
    return [
        {name: p.detach().cpu().clone() for name, p in module.named_parameters() if p.requires_grad}
        for module in modules
    ]


def load_trainable_state(states: list[dict[str, torch.Tensor]], *modules: torch.nn.Module) -> None:
    for state, module in zip(states, modules, strict=True):
        params = dict(module.named_parameters())
        missing = set(state) - set(params)
        if missing:
            raise ValueError(f"checkpoint holds parameters the model lacks: {sorted(missing)[:3]}")
        with torch.no_grad():
            for name, value in state.items():
                params[name].copy_(value.to(params[name].device, params[name].dtype))


def save(folder: Path, state: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / FILE
    tmp = folder / f".{FILE}.{os.getpid()}.tmp"
    with tmp.open("wb") as fh:
        torch.save(state, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fsync_dir(folder)


def load(folder: Path) -> dict[str, Any] | None:
    target = folder / FILE
    if not target.exists():
        return None
    state: dict[str, Any] = torch.load(target, map_location="cpu", weights_only=False)
    return state
