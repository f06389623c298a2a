"""trainer.status (what `kbloop trainer status` and the Models tab show) and the operator's stop and
start: read from a refresh folder laid out as trainer/refresh.py writes it."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from trainer.errors import TrainerError
from trainer.progress import STOP_FILE, Progress, Stopped, stop_request
from trainer.runs import Run
from trainer.status import describe, format_seconds, trainer_status
from trainer.worker import (
    Busy,
    Worker,
    WorkerConfig,
    refresh_lock,
    request_stop_refresh,
    start_refresh_process,
)


def running_refresh(data_dir: Path) -> Path:
    """A refresh folder whose reward phase is at step 30 of 120 with a loss logged."""
    root = data_dir / "runs" / "refresh-20261202-180000"
    Run.open(root, "refresh", {"algo": "ppo"}).update(parent="v0001")
    reward = Run.open(root / "reward", "reward", {"lr": 1e-4})
    reward.log(30, {"loss": 0.61, "accuracy": 0.75})
    progress = Progress("reward model: training", 120, folder=reward.root, every_s=0.0)
    progress.update(30, loss=0.61)
    return root


def test_idle_when_nothing_ran(tmp_path: Path) -> None:
    status = trainer_status(tmp_path)
    assert status == {"running": False, "pid": None, "refresh": None, "last": None}
    assert describe(status) == ["trainer: idle"]


def test_running_refresh_shows_phase_progress_eta_and_metrics(tmp_path: Path) -> None:
    root = running_refresh(tmp_path)
    with refresh_lock(tmp_path):
        status = trainer_status(tmp_path)
        assert status["running"] and status["pid"] is not None
        refresh = status["refresh"]
        assert refresh["folder"] == str(root) and refresh["status"] == "running"
        assert refresh["parent"] == "v0001"
        current = refresh["current"]
        assert current["name"] == "reward"
        assert (current["progress"]["done"], current["progress"]["total"]) == (30, 120)
        assert current["metrics"]["loss"] == 0.61
        text = "\n".join(describe(status))
        assert "reward model: training 30/120 step" in text and "ETA" in text and "loss 0.61" in text
    # the lock is gone but the manifest still says running: the process was killed
    after = trainer_status(tmp_path)
    assert not after["running"] and after["refresh"]["status"] == "interrupted"
    assert after["refresh"]["current"] is None


def test_stop_needs_a_running_refresh_and_reaches_its_phases(tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="no refresh is running"):
        request_stop_refresh(tmp_path)
    root = running_refresh(tmp_path)
    with refresh_lock(tmp_path):
        assert request_stop_refresh(tmp_path) == root
        assert (root / STOP_FILE).exists()
        assert stop_request(root / "reward", since_ts=0.0) is not None  # the phase's loop sees it
        assert trainer_status(tmp_path)["refresh"]["stop_requested"] is not None


def test_start_is_refused_while_a_refresh_runs(tmp_path: Path) -> None:
    with refresh_lock(tmp_path), pytest.raises(Busy):
        start_refresh_process(tmp_path)


def test_a_stopped_refresh_is_recorded_as_stopped_not_failed(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")

    def stopped(_s: Any, _c: Any) -> Any:
        raise Stopped("reward model: training: stopped on request after step 3 of 8")

    worker = Worker(settings, None, WorkerConfig(), refresh=stopped)  # type: ignore[arg-type]
    entry = worker.run_once(force=True)
    assert entry is not None and entry["status"] == "stopped" and "step 3 of 8" in entry["error"]
    assert trainer_status(settings.data_dir)["last"]["status"] == "stopped"


def test_status_reads_while_a_phase_writes(tmp_path: Path) -> None:
    """progress.json is replaced atomically: a reader never sees a half-written file."""
    root = running_refresh(tmp_path)
    progress = Progress("reward model: scoring", 10_000, folder=root / "reward", unit="seq", every_s=0.0)
    done = threading.Event()

    def write() -> None:
        for _ in range(300):
            progress.update(1)
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    while not done.is_set():
        phase = trainer_status(tmp_path)["refresh"]["phases"][0]
        assert phase["progress"] is not None
    thread.join()


def test_format_seconds() -> None:
    assert format_seconds(59.6) == "1m00s"
    assert format_seconds(3725) == "1h02m"
