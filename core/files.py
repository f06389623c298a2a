"""Durable file-system writes: fsync of files and folders, and atomic replacement, so a result renamed
into place survives a crash or power loss and a reader never sees half a file (manifests, aliases, the
index's versions, backups and trainer checkpoints all publish this way)."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a rename into it, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """Every file under `folder`, then every folder (the entries), made durable."""
    for path in folder.rglob("*"):
        if path.is_file():
            fsync_file(path)
    for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        fsync_dir(sub)


def temporary_sibling(path: Path) -> Path:
    """A hidden name beside `path`, unique to this process and thread (concurrent writers of one file
    never share a temporary)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside `path` to write the new content to. On a clean exit the file is fsynced,
    renamed over `path` and the folder fsynced; on an error the temporary is removed and `path` keeps
    its old content (or stays absent)."""
    tmp = temporary_sibling(path)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, data: Any, *, indent: int | None = 2, default: Callable[[Any], Any] = str) -> None:
    """`data` as JSON, replacing `path` atomically. What JSON cannot encode (a path, a datetime) is
    written as `default(value)`, its text by default."""
    write_text_atomic(path, json.dumps(data, indent=indent, default=default))
