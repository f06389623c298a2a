"""Who is using a data directory, told by advisory locks (flock) that the OS releases when their
process dies, so a killed server never blocks anything.

- A server holds a shared lock on DATA_DIR/.kbloop.lock for as long as it runs (`hold_shared`, taken
  at startup): several servers may share a data directory.
- `kbloop restore` takes that lock exclusively, together with the locks of the other writers: an
  ingest's INDEX_DIR/.lock (rag.index.ingest_lock) and a refresh's DATA_DIR/trainer/lock
  (trainer.worker.refresh_lock). It fails at once, naming the holder, instead of replacing files a
  running process still writes into; and a server started during a restore refuses to start.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from core.datadir import DataDir

LOCK_FILE = DataDir(Path(".")).lock.name  # the lock file's name, in every data directory


class DataDirInUse(Exception):
    """Another process holds the data directory (a server, an ingest, a refresh, or a restore)."""

    code = "data_dir_in_use"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServerLock:
    """The shared lock of a running server; `release()` (or the process's end) gives it back."""

    def __init__(self, fd: int) -> None:
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock
            self._fd = None


def hold_shared(data_dir: Path) -> ServerLock:
    """The server's lock on `data_dir`: DataDirInUse while a restore is replacing it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(DataDir(data_dir).lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirInUse(
            f"a restore (`kbloop restore`) is replacing {data_dir}; start the server when it has finished"
        ) from None
    return ServerLock(fd)


@contextmanager
def exclusive(data_dir: Path, index_dir: Path | None = None) -> Iterator[None]:
    """Every lock on `data_dir` (and its index), taken without waiting and held until the block ends;
    DataDirInUse naming the first holder otherwise. Nothing to lock when `data_dir` does not exist."""
    if not data_dir.exists():
        yield
        return
    index_dir = index_dir or DataDir(data_dir).index
    held: list[int] = []
    try:
        # the server's lock file is created if missing, so a server starting now waits for us
        fd = os.open(DataDir(data_dir).lock, os.O_RDWR | os.O_CREAT, 0o644)
        held.append(fd)
        _take(fd, f"a server (`kbloop serve`) is using {data_dir}; stop it first")
        for path, holder in (
            (index_dir / ".lock", f"an ingest (`kbloop ingest`) is writing {index_dir}"),
            (DataDir(data_dir).trainer_lock, f"a refresh of the background trainer is using {data_dir}"),
        ):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue  # never created: nobody holds it
            held.append(fd)
            _take(fd, f"{holder}{_pid_note(path)}; wait for it to finish or stop it first")
        yield
    finally:
        for fd in held:
            os.close(fd)


def _take(fd: int, message: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DataDirInUse(message) from None


def _pid_note(path: Path) -> str:
    """' (pid N)' when the lock file names its holder (the trainer writes its pid there)."""
    try:
        pid = path.read_text().strip()
    except OSError:
        return ""
    return f" (pid {pid})" if pid.isdigit() else ""
