"""What the trainer is doing now, read from files only (no lock taken, nothing written).

`trainer_status(data_dir)` is what `kbloop trainer status` prints and the Models tab shows:

- `running`: whether a refresh holds DATA_DIR/trainer/lock, and the pid written in it;
- `refresh`: the newest refresh under DATA_DIR/runs/ (its folder, status, parent, error) with one entry
  per phase folder (reward, sft, ppo, dpo: status, the phase's progress.json, its last metrics line),
  the phase running now and whether a stop was requested;
- `last`: the last finished refresh as the worker recorded it (DATA_DIR/trainer/state.json).

A refresh whose manifest says "running" while nobody holds the lock was killed: it is shown as
`interrupted` (resume it with `kbloop train refresh --output FOLDER`).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from core.datadir import DataDir
from trainer.progress import STOP_FILE, read_progress

PHASES = ("reward", "sft", "ppo", "dpo", "kto", "evaluation")


def lock_holder(data_dir: Path) -> int | None:
    """The pid in DATA_DIR/trainer/lock while some process holds it (a refresh runs), else None."""
    path = DataDir(data_dir).trainer_lock
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text().strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def last_metrics(folder: Path) -> dict[str, Any]:
    """The last complete line of a run's metrics.jsonl ({} when none)."""
    path = folder / "metrics.jsonl"
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return {}
    for line in reversed(lines):
        try:
            data: dict[str, Any] = json.loads(line)
        except ValueError:
            continue  # a line cut by a kill
        return data
    return {}


def phase_status(folder: Path) -> dict[str, Any]:
    """A phase folder's state; one without a run manifest (the evaluation) reads it from its progress."""
    manifest = _json(folder / "manifest.json")
    progress = read_progress(folder)
    fallback = {"running": "running", "finished": "succeeded"}.get(
        (progress or {}).get("state", ""), "pending"
    )
    return {
        "name": folder.name,
        "status": manifest.get("status", fallback),
        "error": manifest.get("error"),
        "progress": progress,
        "metrics": last_metrics(folder),
    }


def latest_refresh(runs: Path) -> Path | None:
    """The most recently created refresh folder under `runs` (by its manifest's creation time)."""
    if not runs.is_dir():
        return None
    found = [p for p in runs.iterdir() if p.is_dir() and p.name.startswith("refresh-")]
    if not found:
        return None
    return max(found, key=lambda p: (str(_json(p / "manifest.json").get("created", "")), p.name))


def refresh_status(folder: Path, running: bool) -> dict[str, Any]:
    manifest = _json(folder / "manifest.json")
    status = manifest.get("status", "unknown")
    if status == "running" and not running:
        status = "interrupted"
    phases = [phase_status(folder / name) for name in PHASES if (folder / name).is_dir()]
    current = next(
        (p for p in phases if p["status"] == "running" and (p["progress"] or {}).get("state") == "running"),
        None,
    )
    stop = _json(folder / STOP_FILE)
    return {
        "folder": str(folder),
        "status": status,
        "created": manifest.get("created"),
        "parent": manifest.get("parent"),
        "error": manifest.get("error"),
        "candidate": manifest.get("candidate"),
        "phases": phases,
        "current": current if status == "running" else None,
        "stop_requested": stop.get("requested") if stop else None,
    }


def trainer_status(data_dir: Path) -> dict[str, Any]:
    pid = lock_holder(data_dir)
    folder = latest_refresh(DataDir(data_dir).runs)
    state = _json(DataDir(data_dir).trainer_state)
    return {
        "running": pid is not None,
        "pid": pid,
        "refresh": refresh_status(folder, pid is not None) if folder is not None else None,
        "last": state.get("last"),
    }


def describe(status: dict[str, Any]) -> list[str]:
    """Plain lines for a terminal or a Markdown block."""
    lines = [f"trainer: {'refreshing (pid ' + str(status['pid']) + ')' if status['running'] else 'idle'}"]
    refresh = status.get("refresh")
    if refresh:
        lines.append(
            f"refresh {Path(refresh['folder']).name}: {refresh['status']} (parent {refresh['parent']})"
        )
        if refresh.get("stop_requested"):
            lines.append(f"  stop requested at {refresh['stop_requested']}")
        for phase in refresh["phases"]:
            progress = phase["progress"] or {}
            text = f"  {phase['name']}: {phase['status']}"
            if progress:
                done, total = progress.get("done"), progress.get("total")
                text += f", {progress.get('phase')} {done}/{total} {progress.get('unit')}"
                if progress.get("state") == "running" and progress.get("eta_s") is not None:
                    text += f", ETA {format_seconds(float(progress['eta_s']))}"
            metrics = {k: v for k, v in phase["metrics"].items() if k not in ("step", "time")}
            if metrics and phase["status"] == "running":
                text += ", " + ", ".join(
                    f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, int | float)
                )
            if phase.get("error"):
                text += f" ({phase['error']})"
            lines.append(text)
        if refresh.get("error"):
            lines.append(f"  error: {refresh['error']}")
    last = status.get("last")
    if last:
        lines.append(
            f"last refresh: {last.get('status')} (started {last.get('started')}, candidate "
            f"{last.get('candidate') or '-'})" + (f": {last['error']}" if last.get("error") else "")
        )
    return lines


def format_seconds(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
