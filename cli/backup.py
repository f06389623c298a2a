"""`kbloop backup DEST` and `kbloop restore SRC`: the data directory to a checked folder and back."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.errors import fail

if TYPE_CHECKING:
    from core.settings import Settings

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


class _Bar:
    """Bytes copied, as a rich bar on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self._progress = Progress(
            TextColumn("{task.description:>12}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            console=Console(stderr=True),
        )
        self._task: Any = None

    @contextmanager
    def running(self) -> Iterator[_Bar]:
        with self._progress:
            yield self

    def stage(self, name: str, total: int) -> None:
        self._task = self._progress.add_task(name, total=total)

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)


@contextmanager
def _progress(quiet: bool) -> Iterator[Any]:
    if quiet:
        yield None
    else:
        with _Bar().running() as bar:
            yield bar


def _fail(exc: Any) -> typer.Exit:
    """A backup error, or DataDirInUse (not a KbloopError: the API must keep answering it as internal)."""
    return fail(str(exc.code), exc.message)


def _index_note(settings: Settings) -> None:
    index = settings.resolved_index_dir.resolve()
    if not index.is_relative_to(settings.data_dir.resolve() / "index"):
        typer.echo(f"note: the index {index} (KBLOOP_INDEX_DIR) is outside the data directory and is not "
              "part of backups; re-run `kbloop ingest` or copy it yourself", err=True)  # fmt: skip


def backup_command(
    dest: Annotated[Path, typer.Argument(help="New folder to write the backup into (must not exist).")],
    include_base: Annotated[
        bool,
        typer.Option("--include-base", help="Also copy models/base/ (the bundled policy, rebuilt on start)."),
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Back up the data directory (databases, index, models, runs) into DEST, with a checked manifest.

    Safe while the server runs: each SQLite database is copied as one consistent snapshot."""
    from core.settings import get_settings
    from service.backup import BackupError, backup

    settings = get_settings()
    _index_note(settings)
    try:
        with _progress(quiet) as bar:
            manifest = backup(settings.data_dir, dest, include_base=include_base, progress=bar)
    except BackupError as exc:
        raise _fail(exc) from exc
    size = sum(f["size"] for f in manifest["files"])
    databases = ", ".join(manifest["databases"]) or "none"
    typer.echo(
        f"backed up {settings.data_dir} into {dest}: {len(manifest['files'])} files, {size / 1e6:.1f} MB; "
        f"databases {databases} (integrity ok); index version {manifest['index_version'] or 'none'}"
    )
    for note in manifest.get("notes", []):
        typer.echo(f"  note: {note}")


def restore_command(
    src: Annotated[Path, typer.Argument(help="A folder written by `kbloop backup`.")],
    force: Annotated[
        bool, typer.Option("--force", help="Replace a data directory that holds data (it is deleted).")
    ] = False,
    verify_only: Annotated[
        bool, typer.Option("--verify-only", help="Check the backup (hashes, integrity) and change nothing.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Replace the data directory with the backup SRC, checked first and swapped in all at once.

    Stop the server, ingests and the trainer first: restore refuses while any of them holds it."""
    from core.settings import get_settings
    from service.backup import BackupError, restore, verify
    from service.datalock import DataDirInUse

    settings = get_settings()
    try:
        with _progress(quiet) as bar:
            if verify_only:
                manifest = verify(src, progress=bar)
            else:
                manifest = restore(src, settings.data_dir, force=force, progress=bar)
    except (BackupError, DataDirInUse) as exc:
        raise _fail(exc) from exc
    what = f"backup {src} ({manifest['created']}, kbloop {manifest['kbloop_version']})"
    if verify_only:
        typer.echo(
            f"{what} is sound: {len(manifest['files'])} files match their sha256, "
            "its databases pass integrity_check"
        )
        return
    typer.echo(
        f"restored {what} into {settings.data_dir}; index version {manifest['index_version'] or 'none'}"
    )
    if Path(manifest["source"]) != settings.data_dir.resolve():
        typer.echo(
            f"note: it was taken from {manifest['source']}; paths recorded inside it "
            "(runs, reward/latest.json) still name that folder"
        )
    _index_note(settings)
