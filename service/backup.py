"""Backups of the data directory that can be checked and put back (`kbloop backup` / `kbloop restore`).

A backup is a plain folder, the data directory's layout plus a manifest:

    manifest.json             format, created, kbloop version, source folder, index version, every file
                              with its size and sha256, each database's PRAGMA integrity_check result
    kbloop.db                 every SQLite database (found by its header, wherever it lives: the
    models/registry.db        feedback store, the registry, ...) copied with SQLite's online backup
                              API: one consistent snapshot even while the server is writing
    index/CURRENT             the published index version only: versions are immutable folders and
    index/versions/<id>/      CURRENT names the complete one (rag.index)
    models/versions/, models/aliases.json, runs/, reward/, trainer/state.json, ...   copied as they are

Left out: the WAL, shared-memory and journal files beside a database (the snapshot holds what they
held), hidden files and folders (locks, temporary files of writes in progress), trainer/lock, index
versions other than the current one, and models/base/ (the bundled policy, converted again from the
installed wheel on the next start; `include_base` keeps it). Databases are copied first: a model
version the registry names was written before the registry named it, so the copy holds it.

`backup` writes into a hidden sibling of DEST and renames it into place after the manifest: a folder
named DEST is complete. `restore` checks the backup first (each file's size and sha256, each
database's integrity_check), refuses a data directory that holds anything unless `force` and one a
server, an ingest or a refresh is using (service.datalock), copies into a hidden sibling of the data
directory (checking the hashes again as it reads), and swaps the two in one rename (renameat2
RENAME_EXCHANGE on Linux): a restore killed at any point leaves the old data directory as it was.

(One concept at ~550 lines: backup and restore are the two halves of one file format and share its
manifest, hashing and integrity checks; splitting them would put the format in a third module that both
must agree with.)
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar, Protocol

from core.datadir import DataDir
from core.errors import KbloopError
from core.files import fsync_dir, fsync_tree
from service.datalock import LOCK_FILE, exclusive

FORMAT = 1
KIND = "kbloop-backup"
MANIFEST = "manifest.json"
SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")  # beside a database: folded into its snapshot
BLOCK = 1 << 20


class BackupErrorCode(StrEnum):
    SOURCE_MISSING = "source_missing"
    DESTINATION_EXISTS = "destination_exists"
    INVALID_DESTINATION = "invalid_destination"
    BACKUP_CORRUPT = "backup_corrupt"
    SOURCE_CORRUPT = "source_corrupt"
    DATA_DIR_NOT_EMPTY = "data_dir_not_empty"
    WRITE_FAILED = "write_failed"


class BackupError(KbloopError):
    """Base class: `code` says what went wrong, the message says what to do about it."""

    code: ClassVar[BackupErrorCode] = BackupErrorCode.WRITE_FAILED


class SourceMissing(BackupError):
    """The data directory to back up, or the backup to restore, does not exist."""

    code = BackupErrorCode.SOURCE_MISSING


class DestinationExists(BackupError):
    """A backup never overwrites: DEST is taken."""

    code = BackupErrorCode.DESTINATION_EXISTS


class InvalidDestination(BackupError):
    """DEST lies inside the data directory (the backup would copy itself)."""

    code = BackupErrorCode.INVALID_DESTINATION


class BackupCorrupt(BackupError):
    """The backup is damaged: a file missing, truncated or changed, or a database failing its check."""

    code = BackupErrorCode.BACKUP_CORRUPT


class SourceCorrupt(BackupError):
    """A database of the data directory fails PRAGMA integrity_check: a backup of it would not restore."""

    code = BackupErrorCode.SOURCE_CORRUPT


class DataDirNotEmpty(BackupError):
    """Restore would replace a data directory that holds data, and `force` was not given."""

    code = BackupErrorCode.DATA_DIR_NOT_EMPTY


class WriteFailed(BackupError):
    """Writing the copy failed (disk full, permissions); nothing half-written is left behind."""

    code = BackupErrorCode.WRITE_FAILED


class Progress(Protocol):
    """What backup and restore report while they copy (bytes); the CLI draws it as a progress bar."""

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, n: int = 1) -> None: ...


class _Silent:
    def stage(self, name: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass


@dataclass
class _Plan:
    """What a backup copies, by path relative to the data directory."""

    databases: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    bytes: int = 0


# -- backup -----------------------------------------------------------------------------------------


def backup(
    data_dir: Path, dest: Path, *, include_base: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Copy `data_dir` into the new folder `dest`; returns the manifest written there."""
    progress = progress or _Silent()
    data_dir, dest = data_dir.resolve(), dest.resolve()
    if not data_dir.is_dir():
        raise SourceMissing(f"there is no data directory at {data_dir} (KBLOOP_DATA_DIR); nothing to back up")
    if dest.exists() or dest.is_symlink():
        raise DestinationExists(f"{dest} already exists; a backup never overwrites: choose a new name")
    if dest.is_relative_to(data_dir):
        raise InvalidDestination(f"{dest} is inside the data directory {data_dir}; put backups elsewhere")
    plan = _plan(data_dir, include_base)
    _remove_stale(dest.parent, f".{dest.name}.partial-")
    partial = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    try:
        partial.mkdir(parents=True)
        progress.stage("backing up", plan.bytes)
        files: list[dict[str, Any]] = []
        databases: dict[str, dict[str, Any]] = {}
        for rel in plan.databases:  # first: everything they name was written before they named it
            files.append(_backup_database(data_dir / rel, partial / rel, rel))
            databases[rel] = {"integrity_check": "ok"}
            progress.advance(files[-1]["size"])
        notes: list[str] = []
        index_version, index_files = _copy_index(
            DataDir(data_dir).index, DataDir(partial).index, progress, notes
        )
        files += index_files
        for rel in plan.files:
            try:
                files.append(_copy_file(data_dir / rel, partial / rel, rel, progress))
            except FileNotFoundError:
                continue  # removed since the plan (a finished run's checkpoint, a replaced file)
        manifest = {
            "format": FORMAT,
            "kind": KIND,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "kbloop_version": _version(),
            "source": str(data_dir),
            "index_version": index_version,
            "databases": databases,
            "files": sorted(files, key=lambda f: f["path"]),
            "notes": notes,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=1))
        fsync_tree(partial)
        os.rename(partial, dest)
        fsync_dir(dest.parent)
    except OSError as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise WriteFailed(f"cannot make the backup {dest} ({exc}); nothing of it was kept") from exc
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _plan(data_dir: Path, include_base: bool) -> _Plan:
    plan = _Plan()
    for folder, dirs, names in os.walk(data_dir):
        here = Path(folder)
        rel_dir = here.relative_to(data_dir)
        dirs[:] = sorted(
            d
            for d in dirs
            if not d.startswith(".")
            and not (rel_dir == Path(".") and d == "index")  # copied by _copy_index
            and not (rel_dir == Path("models") and d == "base" and not include_base)
        )
        databases = {n for n in names if _is_database(here / n)}
        for name in sorted(names):
            rel = str(rel_dir / name) if rel_dir != Path(".") else name
            if name.startswith(".") or rel == "trainer/lock":
                continue
            if any(name == db + side for db in databases for side in SIDE_FILES):
                continue
            try:
                size = (here / name).stat().st_size
            except FileNotFoundError:
                continue
            plan.bytes += size
            (plan.databases if name in databases else plan.files).append(rel)
    plan.bytes += _index_bytes(DataDir(data_dir).index)
    return plan


def _index_bytes(index: Path) -> int:
    from rag.index import current_version, version_dir

    version = current_version(index)
    if version is None:
        return 0
    try:
        return sum(p.stat().st_size for p in version_dir(index, version).rglob("*") if p.is_file())
    except FileNotFoundError:
        return 0


def _is_database(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER
    except OSError:
        return False


def _backup_database(src: Path, dst: Path, rel: str) -> dict[str, Any]:
    """One consistent snapshot of the database at `src` (SQLite's online backup API, in one step: a
    single read transaction, which writers in WAL mode do not wait for), checked before it counts."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        source = _open_source(src)
        try:
            target = sqlite3.connect(dst)
            try:
                source.backup(target)  # pages=-1: all at once, so no write can restart it
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.DatabaseError as exc:
        if (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF in (
            sqlite3.SQLITE_CORRUPT,
            sqlite3.SQLITE_NOTADB,
        ):
            raise SourceCorrupt(f"cannot read the database {src} ({exc}); restore an older backup") from exc
        raise OSError(f"copying the database {src}: {exc}") from exc  # the copy's disk full, unwritable
    check = integrity_check(dst)
    if check != "ok":
        raise SourceCorrupt(f"the database {src} fails PRAGMA integrity_check: {check}")
    size, digest = _hash(dst)
    return {"path": rel, "size": size, "sha256": digest}


def _open_source(src: Path) -> sqlite3.Connection:
    """An ordinary connection (the last one to close removes the WAL files, as any would), read-only
    where the database cannot be written (SQLite then leaves its -wal and -shm files behind)."""
    try:
        conn = sqlite3.connect(src, timeout=30)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.OperationalError:
        return sqlite3.connect(src.as_uri() + "?mode=ro", uri=True, timeout=30)


def integrity_check(path: Path) -> str:
    """'ok', or what PRAGMA integrity_check found (also when the file is not a database at all).
    The file is opened immutable: nothing is written beside it."""
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro&immutable=1", uri=True)
        try:
            problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall()]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "; ".join(problems[:10])


def _copy_index(
    index: Path, target: Path, progress: Progress, notes: list[str]
) -> tuple[str | None, list[dict[str, Any]]]:
    """The published version, its CURRENT pointer and the calibration. An ingest may publish meanwhile
    and collect the version being copied: then the new current version is copied instead."""
    from rag.index import CURRENT, current_version, version_dir

    for _ in range(5):
        version = current_version(index)
        if version is None:
            return None, []
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        files: list[dict[str, Any]] = []
        folder = version_dir(index, version)
        try:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = path.relative_to(index.parent).as_posix()
                files.append(_copy_file(path, target.parent / rel, rel, progress))
            complete = (folder / "manifest.json").exists()
        except FileNotFoundError:
            complete = False
        if not complete:
            if current_version(index) != version:
                continue  # collected under us: copy the version that replaced it
            shutil.rmtree(target, ignore_errors=True)
            notes.append(f"index left out: CURRENT names {version}, which is missing or incomplete")
            return None, []
        (target / CURRENT).write_text(version + "\n")
        files.append(_entry(target / CURRENT, f"index/{CURRENT}"))
        calibration = index / "calibration.json"
        if calibration.exists():
            files.append(
                _copy_file(calibration, target / calibration.name, "index/calibration.json", progress)
            )
        return version, files
    raise WriteFailed(f"the index {index} kept changing while it was copied; retry when no ingest runs")


def _copy_file(
    src: Path, dst: Path, rel: str, progress: Progress, expected: str | None = None
) -> dict[str, Any]:
    """Copy one file, hashing what is written; BackupCorrupt if `expected` (a sha256) differs."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        while block := fin.read(BLOCK):
            fout.write(block)
            digest.update(block)
            size += len(block)
            progress.advance(len(block))
    shutil.copymode(src, dst)
    if expected is not None and digest.hexdigest() != expected:
        raise BackupCorrupt(
            f"{rel} changed while it was restored (sha256 mismatch); is the backup being written?"
        )
    return {"path": rel, "size": size, "sha256": digest.hexdigest()}


def _entry(path: Path, rel: str) -> dict[str, Any]:
    size, digest = _hash(path)
    return {"path": rel, "size": size, "sha256": digest}


def _hash(path: Path, progress: Progress | None = None) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
            size += len(block)
            if progress is not None:
                progress.advance(len(block))
    return size, digest.hexdigest()


# -- verify and restore -----------------------------------------------------------------------------


def verify(src: Path, progress: Progress | None = None) -> dict[str, Any]:
    """The manifest of the backup at `src` once every file in it checks out; BackupCorrupt otherwise."""
    progress = progress or _Silent()
    if not src.exists():
        raise SourceMissing(f"there is no backup at {src}")
    try:
        manifest: dict[str, Any] = json.loads((src / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupCorrupt(f"{src} is not a kbloop backup: it has no {MANIFEST}") from None
    except (OSError, ValueError) as exc:
        raise BackupCorrupt(f"the manifest of {src} is unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BackupCorrupt(f"{src / MANIFEST} is not the manifest of a kbloop backup")
    if manifest.get("format") != FORMAT:
        raise BackupCorrupt(
            f"{src} has backup format {manifest.get('format')!r}; this kbloop ({_version()}) reads format "
            f"{FORMAT}: restore it with the kbloop that made it ({manifest.get('kbloop_version')})"
        )
    files = manifest.get("files")
    if not isinstance(files, list):
        raise BackupCorrupt(f"the manifest of {src} lists no files")
    progress.stage("verifying", sum(int(f.get("size", 0)) for f in files if isinstance(f, dict)))
    for entry in files:
        rel = _safe_path(entry, src)
        path = src / rel
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise BackupCorrupt(f"{src}: {rel} is missing") from None
        if size != entry["size"]:
            how = "truncated" if size < entry["size"] else "longer than recorded"
            raise BackupCorrupt(f"{src}: {rel} is {how} ({size} bytes, the manifest says {entry['size']})")
        if _hash(path, progress)[1] != entry["sha256"]:
            raise BackupCorrupt(f"{src}: {rel} does not match its sha256 in the manifest (damaged)")
    listed = {f["path"] for f in files}
    for rel, info in dict(manifest.get("databases", {})).items():
        if rel not in listed:
            raise BackupCorrupt(f"{src}: the database {rel} is not among the manifest's files")
        check = integrity_check(src / rel)
        if check != "ok" or info.get("integrity_check") != "ok":
            raise BackupCorrupt(f"{src}: the database {rel} fails PRAGMA integrity_check: {check}")
    return manifest


def restore(
    src: Path, data_dir: Path, *, force: bool = False, progress: Progress | None = None
) -> dict[str, Any]:
    """Replace `data_dir` with the backup at `src`, all at once; returns the backup's manifest."""
    progress = progress or _Silent()
    src, data_dir = src.resolve(), data_dir.resolve()
    manifest = verify(src, progress)
    if data_dir.is_relative_to(src) or src.is_relative_to(data_dir):
        raise InvalidDestination(f"the backup {src} and the data directory {data_dir} overlap")
    _recover(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise DataDirNotEmpty(f"{data_dir} is a file, not a data directory; move it away first")
    if not force and _holds_data(data_dir):
        raise DataDirNotEmpty(
            f"{data_dir} holds data; restore with --force to replace it (or restore into an empty folder)"
        )
    with exclusive(data_dir):
        staging = data_dir.parent / f".{data_dir.name}.restore-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            progress.stage("restoring", sum(f["size"] for f in manifest["files"]))
            for entry in manifest["files"]:
                rel = entry["path"]
                _copy_file(src / rel, staging / rel, rel, progress, expected=entry["sha256"])
            fsync_tree(staging)
            _swap(staging, data_dir)
        except OSError as exc:
            raise WriteFailed(f"cannot restore into {data_dir} ({exc}); it was left as it was") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # the new copy on failure, the old data on success
    return manifest


def _safe_path(entry: Any, src: Path) -> str:
    """A manifest entry's relative path, refused when malformed or pointing outside the backup."""
    try:
        rel, size, digest = entry["path"], entry["size"], entry["sha256"]
    except (TypeError, KeyError):
        raise BackupCorrupt(f"the manifest of {src} has a malformed file entry: {entry!r}") from None
    parts = PurePosixPath(rel).parts if isinstance(rel, str) else ()
    if (
        not parts
        or rel.startswith("/")
        or ".." in parts
        or not isinstance(size, int)
        or not isinstance(digest, str)
    ):
        raise BackupCorrupt(f"the manifest of {src} has an invalid file entry: {entry!r}")
    return str(rel)


def _holds_data(data_dir: Path) -> bool:
    return data_dir.exists() and any(p.name != LOCK_FILE for p in data_dir.iterdir())


def _swap(staging: Path, data_dir: Path) -> None:
    """Put `staging` where `data_dir` is; afterwards `staging` holds the old data (if there was any)."""
    if not data_dir.exists():
        os.rename(staging, data_dir)
    elif not _exchange(staging, data_dir):  # not Linux, or a filesystem without RENAME_EXCHANGE
        # two renames: a kill between them leaves the old data at `aside`, which _recover puts back
        aside = data_dir.parent / f".{data_dir.name}.replaced-{os.getpid()}"
        os.rename(data_dir, aside)
        os.rename(staging, data_dir)
        os.rename(aside, staging)
    fsync_dir(data_dir.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE); False where that is not available."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _recover(data_dir: Path) -> None:
    """Undo what a killed restore left: the old data put aside between two renames goes back, the
    staging copies of dead processes go."""
    if not data_dir.exists():
        aside = sorted(data_dir.parent.glob(f".{data_dir.name}.replaced-*"))
        if aside:
            os.rename(aside[-1], data_dir)
    _remove_stale(data_dir.parent, f".{data_dir.name}.restore-")
    _remove_stale(data_dir.parent, f".{data_dir.name}.replaced-")


def _remove_stale(parent: Path, prefix: str) -> None:
    """Remove `parent/<prefix><pid>` folders whose process is gone."""
    if not parent.is_dir():
        return
    for path in parent.glob(prefix + "*"):
        pid = path.name.removeprefix(prefix)
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("kbloop")
    except PackageNotFoundError:
        return "unknown"
