"""Start the background trainer beside the server (`KBLOOP_TRAINER_AUTOSTART=true`).

The trainer runs as its own process (`kbloop trainer run`), not
a thread: training would otherwise compete with request handling for the GIL, and a crash or an
out-of-memory kill of a training run must not take the server down. The server stops it on shutdown
(SIGTERM, then SIGKILL after a grace period); the worker's lock is released by the OS either way, and
a refresh killed midway resumes from its checkpoint next time.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger(__name__)


def start(settings: Settings) -> subprocess.Popen[bytes]:
    log_path = settings.data.trainer_log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "KBLOOP_DATA_DIR": str(settings.data_dir)}
    command = [
        sys.executable,
        "-m",
        "cli.app",
        "trainer",
        "run",
        "--min-feedback",
        str(settings.trainer_min_feedback),
        "--interval-h",
        str(settings.trainer_interval_h),
    ]
    with log_path.open("ab") as out:
        proc = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    log.info("background trainer started (pid %d, log %s)", proc.pid, log_path)
    return proc


def stop(proc: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
