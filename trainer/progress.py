"""Progress of a long phase (training, scoring, evaluation, rollouts): a terminal bar and a file.

One `Progress` per phase. It shows a tqdm bar (done/total, rate, ETA) on the terminal and, when it has a
run folder, keeps `RUN/progress.json` up to date (written atomically, at most every `every_s` seconds and
at the end), so `kbloop trainer status` and the Models tab can show what a running refresh is doing:

    {"phase": "reward model: training", "done": 40, "total": 150, "unit": "step", "rate": 0.12,
     "eta_s": 916.7, "elapsed_s": 333.3, "state": "running", "metrics": {"loss": 0.61}, "pid": 123,
     "started": "...", "updated": "...", "finished_phases": [{"phase": ..., "done": ..., "seconds": ...}]}

A stop request is a file `STOP` in the run folder or its parent (a refresh's folder holds its phases'
folders), written by `request_stop`. Loops ask `stop_requested()` between steps; a request older than
the phase is ignored, so a resumed run does not stop again on the request that stopped it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from core.clock import utc_now
from core.files import write_json
from trainer.errors import TrainerError

PROGRESS_FILE = "progress.json"
STOP_FILE = "STOP"


class Stopped(TrainerError):
    """An operator asked the run to stop; it saved a checkpoint and can be resumed."""


def eta_seconds(done: float, total: float, elapsed_s: float) -> float | None:
    """Seconds left at the mean rate so far; None before the first unit is done or without a total."""
    if done <= 0 or total <= 0 or elapsed_s <= 0:
        return None
    return max(0.0, (total - done) * elapsed_s / done)


def request_stop(folder: Path, reason: str = "operator") -> Path:
    """Ask the run in `folder` (a run or a refresh folder) to stop at its next step boundary."""
    path = folder / STOP_FILE
    write_json(path, {"requested": utc_now(), "requested_ts": time.time(), "reason": reason})
    return path


def stop_request(folder: Path, since_ts: float) -> dict[str, Any] | None:
    """The stop request for `folder` (in it or in its parent) made at or after `since_ts`, or None."""
    for place in (folder, folder.parent):
        path = place / STOP_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if float(data.get("requested_ts", 0.0)) >= since_ts:
            return data
    return None


def read_progress(folder: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads((folder / PROGRESS_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data


class Progress:
    """A phase's bar and progress file. Use as a context manager, or call `close()`."""

    def __init__(
        self,
        phase: str,
        total: int,
        *,
        folder: Path | None = None,
        unit: str = "step",
        initial: int = 0,
        enabled: bool = True,
        every_s: float = 2.0,
    ) -> None:
        from tqdm.auto import tqdm

        self.phase, self.total, self.unit, self.folder = phase, int(total), unit, folder
        self.enabled, self.every_s = enabled, every_s
        self.initial = self.done = int(initial)
        self.started = time.time()
        self.metrics: dict[str, float] = {}
        self._written = 0.0
        self._bar = tqdm(total=self.total, initial=self.done, desc=phase, unit=unit, disable=not enabled)
        self._write("running", force=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.close("finished" if exc_type is None else "stopped")

    def update(self, n: int = 1, **metrics: float) -> None:
        self.done += n
        self.metrics.update({k: float(v) for k, v in metrics.items()})
        self._bar.update(n)
        if metrics:
            self._bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()}, refresh=False)
        self._write("running")

    def stop_requested(self) -> dict[str, Any] | None:
        return stop_request(self.folder, self.started) if self.folder is not None else None

    def close(self, state: str = "finished") -> None:
        self._bar.close()
        self._write(state, force=True)

    def snapshot(self, state: str) -> dict[str, Any]:
        elapsed = time.time() - self.started
        counted = self.done - self.initial  # units done by this process (a resumed run starts past 0)
        eta = eta_seconds(counted, self.total - self.initial, elapsed)
        return {
            "phase": self.phase,
            "done": self.done,
            "total": self.total,
            "unit": self.unit,
            "rate": round(counted / elapsed, 4) if elapsed > 0 else None,
            "eta_s": None if eta is None else round(eta, 1),
            "elapsed_s": round(elapsed, 1),
            "state": state,
            "metrics": dict(self.metrics),
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "updated": utc_now(),
        }

    def _write(self, state: str, *, force: bool = False) -> None:
        if self.folder is None or not self.enabled:
            return
        at = time.monotonic()
        if not force and at - self._written < self.every_s:
            return
        self._written = at
        previous = read_progress(self.folder) or {}
        finished = [p for p in previous.get("finished_phases", []) if p.get("phase") != self.phase]
        data = self.snapshot(state)
        if state != "running":
            finished.append({k: data[k] for k in ("phase", "done", "total", "unit", "elapsed_s", "state")})
        data["finished_phases"] = finished
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / PROGRESS_FILE, data)
