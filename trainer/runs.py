"""A training run's folder: config, manifest, metrics, checkpoint, and the output published atomically.

    RUN/config.json      the typed config (a rerun with the same folder resumes only with the same config)
    RUN/manifest.json    kind, status (running | succeeded | failed), error, parent version, data
                         snapshot, hyperparameters, git commit, metrics, timings
    RUN/metrics.jsonl    one JSON object per logged step
    RUN/checkpoint/      the latest resumable state (see trainer/checkpoint.py)
    RUN/output/          the result (adapter or reward model); appears only when complete

The output is written to `RUN/.output.partial` and renamed to `RUN/output` at the end, so a killed run
never leaves a complete-looking result behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.clock import utc_now
from core.files import write_json, write_text_atomic
from trainer.errors import TrainerError

REPO = Path(__file__).resolve().parent.parent


def git_commit() -> str | None:
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def new_run_dir(runs: Path, kind: str) -> Path:
    """A fresh, empty folder `runs/{kind}-{YYYYmmdd-HHMMSS}` (suffixed -2, -3, ... when that second is
    taken), created here so two runs started in the same second never share (and resume) one folder."""
    runs.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        root = runs / (stem if n == 1 else f"{stem}-{n}")
        try:
            root.mkdir()
        except FileExistsError:
            continue
        return root
    raise TrainerError(f"no free run folder for {stem} in {runs}")


class Run:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def open(cls, root: Path, kind: str, config: dict[str, Any], *, main: bool = True) -> Run:
        """A new run in `root`, or the same run resumed when `root` holds one with this config.

        The secondary processes of a multi-process launch (`main=False`) only read the folder (its
        checkpoint): the main process alone writes the config, manifest and metrics."""
        run = cls(root)
        if not main:
            return run
        if (root / "config.json").exists():
            old = json.loads((root / "config.json").read_text())
            if old != json.loads(json.dumps(config, default=str)):
                raise TrainerError(
                    f"{root} holds a run with another config; choose a new --output folder to start afresh"
                )
            manifest = run.manifest()
            if manifest.get("status") == "succeeded":
                raise TrainerError(f"{root} holds a finished run; its result is in {root / 'output'}")
            run.update(status="running", resumed=utc_now(), error=None)
            return run
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / "config.json", config)
        write_json(
            root / "manifest.json",
            {
                "kind": kind,
                "status": "running",
                "created": utc_now(),
                "git_commit": git_commit(),
                "config": config,
            },
        )
        return run

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / "checkpoint"

    @property
    def output(self) -> Path:
        return self.root / "output"

    def manifest(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.root / "manifest.json").read_text())
        except (OSError, ValueError):
            return {}
        return data

    def update(self, **fields: Any) -> None:
        write_json(self.root / "manifest.json", {**self.manifest(), **fields})

    def log(self, step: int, values: dict[str, Any]) -> None:
        with (self.root / "metrics.jsonl").open("a") as fh:
            fh.write(json.dumps({"step": step, "time": utc_now(), **values}, default=float) + "\n")

    def metrics(self) -> list[dict[str, Any]]:
        path = self.root / "metrics.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut by a kill
        return out

    def truncate_metrics(self, after_step: int) -> None:
        """Drop metric lines past the checkpoint a resumed run restarts from (they are logged again)."""
        kept = [m for m in self.metrics() if int(m.get("step", 0)) <= after_step]
        path = self.root / "metrics.jsonl"
        write_text_atomic(path, "".join(json.dumps(m) + "\n" for m in kept))

    @contextmanager
    def publishing(self) -> Iterator[Path]:
        """A staging folder; renamed to `output` when the block succeeds, removed when it fails."""
        staging = self.root / ".output.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if self.output.exists():
            shutil.rmtree(self.output)
        os.replace(staging, self.output)

    def succeed(self, **fields: Any) -> None:
        self.update(status="succeeded", finished=utc_now(), **fields)
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)

    def fail(self, error: BaseException) -> None:
        self.update(status="failed", finished=utc_now(), error=f"{type(error).__name__}: {error}")
