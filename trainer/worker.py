"""The background trainer: start a refresh when enough new feedback has arrived, or on a schedule.

`kbloop trainer run` polls the store every `poll_s` seconds. A refresh starts when at least
`min_feedback` new feedback events (votes, side-by-side choices, corrections) arrived since the last
refresh's snapshot, or when `interval_h` hours have passed since the last refresh and there is any new
feedback. One refresh runs at a time: an exclusive lock on DATA_DIR/trainer/lock (released by the OS
if the process dies, so a killed worker never blocks the next one). A failed refresh is recorded in
DATA_DIR/trainer/state.json and in its run manifest with the error, and touches no alias: the served
model stays as it was. The result of a successful one is the `candidate`, never served automatically.

Operators can start a refresh now (`start_refresh_process`: the `--once --force` path in a detached
process, refused while one runs) and stop the running one (`request_stop_refresh`: its training loops
save a checkpoint at the next step and stop; nothing is published, and `kbloop train refresh --output
FOLDER` resumes it). What runs is read by trainer/status.py.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.clock import utc_now
from core.datadir import DataDir
from core.files import write_json
from core.settings import Settings
from trainer.errors import TrainerError
from trainer.progress import Stopped, request_stop

if TYPE_CHECKING:
    from trainer.refresh import RefreshConfigs, RefreshResult

log = logging.getLogger(__name__)


class Busy(TrainerError):
    """Another refresh holds the lock."""


@dataclass(frozen=True)
class WorkerConfig:
    """When the background trainer refreshes (its defaults: `Settings.trainer_min_feedback`,
    `trainer_interval_h`)."""

    min_feedback: int = Settings.model_fields["trainer_min_feedback"].default
    interval_h: float = Settings.model_fields["trainer_interval_h"].default  # 0 = only by count
    poll_s: float = 60.0  # seconds between checks


@contextmanager
def refresh_lock(data_dir: Path) -> Iterator[None]:
    """Exclusive, non-blocking: Busy when another process (or thread) is refreshing."""
    folder = DataDir(data_dir).trainer
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy("another refresh is running (DATA_DIR/trainer/lock is held)") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def state_path(data_dir: Path) -> Path:
    return DataDir(data_dir).trainer_state


def read_state(data_dir: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(state_path(data_dir).read_text())
    except (OSError, ValueError):
        return {}
    return data


def new_feedback(db: Path, since: str | None) -> int:
    """Feedback events recorded after `since` (all of them when None)."""
    from feedback.readers import count_feedback_events
    from feedback.store import Store

    if not db.exists():
        return 0
    with Store(db) as store, store.snapshot() as conn:
        return count_feedback_events(conn, since)


def due(state: dict[str, Any], pending: int, cfg: WorkerConfig, at: float) -> str | None:
    """Why a refresh should start now, or None. Pure: the state, the count and the clock are inputs."""
    if pending <= 0:
        return None
    if pending >= cfg.min_feedback:
        return f"{pending} new feedback events (>= {cfg.min_feedback})"
    last = state.get("last_finished_ts")
    if cfg.interval_h > 0 and last is not None and at - float(last) >= cfg.interval_h * 3600:
        return f"schedule: {cfg.interval_h} h since the last refresh and {pending} new events"
    return None


def request_stop_refresh(data_dir: Path, reason: str = "operator") -> Path:
    """Ask the running refresh to stop at its next training step; the folder asked. TrainerError when
    no refresh is running."""
    from trainer.status import latest_refresh, lock_holder

    folder = latest_refresh(DataDir(data_dir).runs)
    if lock_holder(data_dir) is None or folder is None:
        raise TrainerError("no refresh is running")
    request_stop(folder, reason)
    return folder


def start_refresh_process(data_dir: Path) -> tuple[int, Path]:
    """Start `kbloop trainer run --once --force` on `data_dir` in a detached process: (pid, its log).
    Busy when a refresh already runs (the process would find the lock held and stop)."""
    from trainer.status import lock_holder

    if lock_holder(data_dir) is not None:
        raise Busy("a refresh is already running")
    folder = DataDir(data_dir).trainer
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / f"manual-{time.strftime('%Y%m%d-%H%M%S')}.log"
    command = [
        sys.executable,
        "-c",
        "from cli.app import app; app()",
        "trainer",
        "run",
        "--once",
        "--force",
    ]
    with log_path.open("ab") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the web server's restarts
            env={**os.environ, "KBLOOP_DATA_DIR": str(data_dir)},
        )
    return process.pid, log_path


class Worker:
    def __init__(
        self,
        settings: Settings,
        configs: RefreshConfigs,
        cfg: WorkerConfig,
        refresh: Callable[[Settings, RefreshConfigs], RefreshResult] | None = None,
    ) -> None:
        from trainer.refresh import refresh as run_refresh

        self.settings, self.configs, self.cfg = settings, configs, cfg
        self.refresh = refresh or (lambda s, c: run_refresh(s, c))
        self.stop = threading.Event()

    def check(self) -> str | None:
        state = read_state(self.settings.data_dir)
        pending = new_feedback(self.settings.database_path, state.get("last_snapshot"))
        return due(state, pending, self.cfg, time.time())

    def run_once(self, *, force: bool = False) -> dict[str, Any] | None:
        """One refresh if due (or forced); the state entry it recorded, or None when nothing was due."""
        reason = "forced" if force else self.check()
        if reason is None:
            return None
        data_dir = self.settings.data_dir
        with refresh_lock(data_dir):
            log.info("refresh starting: %s", reason)
            started = time.time()
            state = read_state(data_dir)
            entry: dict[str, Any] = {"reason": reason, "started": utc_now()}
            try:
                result = self.refresh(self.settings, self.configs)
            except Stopped as exc:  # an operator's request: the run keeps its checkpoints
                log.info("refresh stopped: %s", exc)
                entry |= {"status": "stopped", "error": str(exc)}
                write_json(state_path(data_dir), {**state, "last": entry, "last_finished_ts": time.time()})
                return entry
            except Exception as exc:  # recorded and survived: the next poll may try again
                log.exception("refresh failed")
                entry |= {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
                # failures back off like successes, so a broken pipeline does not retry in a tight loop
                write_json(state_path(data_dir), {**state, "last": entry, "last_finished_ts": time.time()})
                return entry
            manifest = json.loads((result.run_dir / "manifest.json").read_text())
            entry |= {"status": result.status, "candidate": result.candidate, "run": str(result.run_dir),
                      "seconds": time.time() - started}  # fmt: skip
            write_json(
                state_path(data_dir),
                {**state, "last": entry, "last_finished_ts": time.time(),
                 "last_snapshot": manifest.get("snapshot", {}).get("taken_at")},
            )  # fmt: skip
            return entry

    def run_forever(self) -> None:
        from registry.policy import apply_policies

        while not self.stop.is_set():
            try:
                for note in apply_policies(self.settings):
                    log.info("policy: %s", note)
            except Exception:  # a policy check never stops the worker
                log.exception("automatic promotion/rollback check failed")
            try:
                self.run_once()
            except Busy as exc:
                log.info("%s; waiting", exc)
            self.stop.wait(self.cfg.poll_s)
