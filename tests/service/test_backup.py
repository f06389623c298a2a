"""`kbloop backup` / `kbloop restore`: round trip, a backup taken while another process writes, corrupt
backups refused, no clobbering, and restores that fail or are killed midway leave the old data."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from feedback import Store
from registry.registry import Registry
from registry.versions import ModelDirectory, ModelVersion
from service.backup import (
    BackupCorrupt,
    DataDirNotEmpty,
    DestinationExists,
    InvalidDestination,
    SourceMissing,
    backup,
    integrity_check,
    restore,
    verify,
)
from service.datalock import LOCK_FILE, DataDirInUse, hold_shared
from tests.conftest import REPO
from tests.feedback.factory import make_record

pytestmark = pytest.mark.timeout(120)

ADAPTER = "models/versions/v0002/adapter/adapter_model.safetensors"
RUN_OUTPUT = "runs/reward-20260101-000000/output/model.bin"


def populate(data: Path, fixture_index: Path) -> None:
    """A data directory with everything a running kbloop writes: feedback, registry, index, runs."""
    with Store(data / "kbloop.db") as store:
        for i in range(10):
            store.record_answer(make_record(f"a-{i}", user_id="u-alice"))
            store.vote(f"a-{i}", "u-alice", "up" if i % 3 else "down")
        store.add_correction("a-1", "u-alice", "The right answer [1].")
    models = ModelDirectory(data / "models")
    models.ensure_base("tiny/base")
    adapter = data / "models" / "versions" / "v0002" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(os.urandom(4096))
    models.add(ModelVersion(id="v0002", base="tiny/base", adapter="adapter", created="2026-01-01T00:00:00Z"))
    registry = Registry(data / "models")
    registry.promote("v0002", actor="olga", reason="wins")
    registry.rollback(actor="olga", reason="thumbs down rose")
    registry.promote("v0002", actor="olga", reason="fixed")
    shutil.copytree(fixture_index, data / "index")
    base = data / "models" / "base" / "smollm2"
    base.mkdir(parents=True)
    (base / "config.json").write_text("{}")  # rebuilt from the wheel: left out by default
    run = data / "runs" / "reward-20260101-000000"
    (run / "output").mkdir(parents=True)
    (run / "manifest.json").write_text('{"status": "succeeded"}')
    (run / "output" / "model.bin").write_bytes(os.urandom(10_000))
    (data / "reward").mkdir()
    (data / "reward" / "latest.json").write_text(json.dumps({"folder": str(run / "output")}))
    (data / "trainer").mkdir()
    (data / "trainer" / "state.json").write_text('{"last": null}')
    (data / "trainer" / "lock").write_text("123\n")
    (data / "runs" / ".metrics.jsonl.99.tmp").write_text("half")


def snapshot(data: Path) -> dict[str, Any]:
    """What must survive a round trip, read through the product's own code."""
    from rag.index import current_version

    with Store(data / "kbloop.db") as store:
        answers = store.list_answers(limit=100)
        votes = store.list_votes(limit=100)
        corrections = store.list_corrections(limit=100)
    registry = Registry(data / "models")
    return {
        "answers": answers,
        "votes": votes,
        "corrections": corrections,
        "aliases": registry.aliases(),
        "history": registry.history(limit=100),
        "aliases.json": json.loads((data / "models" / "aliases.json").read_text()),
        "index": current_version(data / "index"),
    }


def tree(folder: Path) -> dict[str, bytes]:
    """The files under `folder` and their bytes (the server lock file, empty, created by any locker,
    aside)."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.endswith(("-wal", "-shm")) and p.name != LOCK_FILE
    }


@pytest.fixture
def data(tmp_path: Path, fixture_index: Path) -> Path:
    folder = tmp_path / "var"
    populate(folder, fixture_index)
    return folder


def test_round_trip_keeps_feedback_registry_and_a_searchable_index(
    data: Path, tmp_path: Path, embedder: Any
) -> None:
    from rag.config import RagConfig
    from rag.search import Retriever

    before = snapshot(data)
    manifest = backup(data, tmp_path / "bk")
    assert not list(data.rglob("*-wal")) and not list(data.rglob("*-shm"))  # nothing left beside them

    paths = {f["path"] for f in manifest["files"]}
    assert set(manifest["databases"]) == {"kbloop.db", "models/registry.db"}
    assert all(d["integrity_check"] == "ok" for d in manifest["databases"].values())
    assert manifest["index_version"] == before["index"]
    assert f"index/versions/{before['index']}/dense.faiss" in paths
    assert {
        "index/CURRENT",
        "models/aliases.json",
        ADAPTER,
        RUN_OUTPUT,
        "reward/latest.json",
        "trainer/state.json",
    } <= paths
    assert not [
        p for p in paths if p.startswith("models/base") or p.endswith(("lock", ".tmp", "-wal", "-shm"))
    ]
    on_disk = {p.relative_to(tmp_path / "bk").as_posix() for p in (tmp_path / "bk").rglob("*") if p.is_file()}
    assert on_disk == paths | {"manifest.json"}  # nothing beside the databases (no -wal, -shm)
    for entry in manifest["files"]:
        assert (tmp_path / "bk" / entry["path"]).stat().st_size == entry["size"]
    assert verify(tmp_path / "bk") == manifest
    assert manifest["kbloop_version"] == "0.1.0" and manifest["created"].endswith("Z")

    target = tmp_path / "restored" / "var"
    restore(tmp_path / "bk", target)
    after = snapshot(target)
    assert after == before
    assert len(after["history"]) == 4 and after["aliases"]["champion"] == "v0002"
    assert ModelDirectory(target / "models").resolve("champion").adapter_path(target / "models") is not None
    for rel in (ADAPTER, RUN_OUTPUT):
        assert (target / rel).read_bytes() == (data / rel).read_bytes()
    assert integrity_check(target / "kbloop.db") == "ok"
    result = Retriever(target / "index", RagConfig(), embedder=embedder).search("parking permit cost", k=3)
    assert result.index_version == before["index"] and result.hits
    assert result.hits[0].source == "policies/parking.md"
    with Store(target / "kbloop.db") as store:  # the restored store takes writes
        store.vote("a-0", "u-alice", "down")
        assert store.integrity_check()


def test_include_base_and_an_empty_data_dir(data: Path, tmp_path: Path) -> None:
    manifest = backup(data, tmp_path / "with-base", include_base=True)
    assert "models/base/smollm2/config.json" in {f["path"] for f in manifest["files"]}
    (tmp_path / "empty").mkdir()
    empty = backup(tmp_path / "empty", tmp_path / "bk-empty")
    assert empty["files"] == [] and empty["index_version"] is None
    restore(tmp_path / "bk-empty", tmp_path / "new")
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())


def test_backup_refuses_a_taken_destination_one_inside_and_a_missing_source(
    data: Path, tmp_path: Path
) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(DestinationExists, match="never overwrites"):
        backup(data, tmp_path / "taken")
    with pytest.raises(InvalidDestination, match="inside the data directory"):
        backup(data, data / "backups" / "b1")
    with pytest.raises(SourceMissing, match="no data directory"):
        backup(tmp_path / "nothing", tmp_path / "b2")
    with pytest.raises(SourceMissing, match="no backup"):
        restore(tmp_path / "nothing", tmp_path / "target")
    assert not (tmp_path / "b2").exists() and not list(tmp_path.glob(".b*partial*"))


def test_backup_of_a_corrupt_database_fails_and_leaves_nothing(data: Path, tmp_path: Path) -> None:
    from service.backup import SourceCorrupt

    _damage_pages(data / "kbloop.db")
    with pytest.raises(SourceCorrupt, match=r"kbloop\.db"):
        backup(data, tmp_path / "bk")
    assert not (tmp_path / "bk").exists() and not list(tmp_path.glob(".bk.partial-*"))


def test_restore_refuses_to_clobber_without_force(data: Path, tmp_path: Path) -> None:
    backup(data, tmp_path / "bk")
    with Store(data / "kbloop.db") as store:
        store.record_answer(make_record("after-backup", user_id="u-alice"))
    before = tree(data)
    with pytest.raises(DataDirNotEmpty, match="--force"):
        restore(tmp_path / "bk", data)
    assert tree(data) == before
    restore(tmp_path / "bk", data, force=True)
    with Store(data / "kbloop.db") as store:
        assert store.count_answers() == 10  # back to the backup: the later answer is gone
    assert not list(tmp_path.glob(".var.*"))  # the replaced data and the staging copy are removed
    # a folder holding only the server's lock file counts as empty
    (tmp_path / "fresh").mkdir()
    hold_shared(tmp_path / "fresh").release()
    restore(tmp_path / "bk", tmp_path / "fresh")
    assert (tmp_path / "fresh" / "kbloop.db").exists()


def test_restore_refuses_while_a_server_an_ingest_or_a_refresh_holds_the_data_dir(
    data: Path, tmp_path: Path
) -> None:
    from rag.index import ingest_lock
    from trainer.worker import refresh_lock

    backup(data, tmp_path / "bk")
    before = tree(data)
    lock = hold_shared(data)
    try:
        with pytest.raises(DataDirInUse, match="a server"):
            restore(tmp_path / "bk", data, force=True)
    finally:
        lock.release()
    with ingest_lock(data / "index"), pytest.raises(DataDirInUse, match="an ingest"):
        restore(tmp_path / "bk", data, force=True)
    with refresh_lock(data), pytest.raises(DataDirInUse, match=rf"refresh.*\(pid {os.getpid()}\)"):
        restore(tmp_path / "bk", data, force=True)
    assert tree(data) == {**before, "trainer/lock": f"{os.getpid()}\n".encode()}


def test_a_server_cannot_start_while_a_restore_holds_the_data_dir(data: Path) -> None:
    from service.datalock import exclusive

    with exclusive(data), pytest.raises(DataDirInUse, match="restore"):
        hold_shared(data)
    hold_shared(data).release()  # and can once it is done


def _damage_pages(db: Path) -> None:
    """Overwrite the middle of a database (its header stays valid, its b-trees do not)."""
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    size = db.stat().st_size
    with db.open("r+b") as fh:
        fh.seek(4096 * 2)
        fh.write(b"\xa5" * min(4096 * 4, size - 4096 * 2))


def _rehash(bk: Path, rel: str) -> None:
    """Make the manifest agree with a file changed on purpose (so only the deeper check can catch it)."""
    import hashlib

    manifest = json.loads((bk / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == rel:
            content = (bk / rel).read_bytes()
            entry["size"], entry["sha256"] = len(content), hashlib.sha256(content).hexdigest()
    (bk / "manifest.json").write_text(json.dumps(manifest))


def _flip_byte(bk: Path) -> None:
    path = next((bk / "index" / "versions").glob("*/embeddings.npy"))
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))


def _truncate(bk: Path) -> None:
    path = bk / "kbloop.db"
    path.write_bytes(path.read_bytes()[:-1000])


def _delete(bk: Path) -> None:
    (bk / "models" / "aliases.json").unlink()


def _bad_integrity(bk: Path) -> None:
    _damage_pages(bk / "kbloop.db")
    _rehash(bk, "kbloop.db")


def _escaping_path(bk: Path) -> None:
    manifest = json.loads((bk / "manifest.json").read_text())
    manifest["files"].append({"path": "../outside", "size": 0, "sha256": "e3b0"})
    (bk / "manifest.json").write_text(json.dumps(manifest))


def _no_manifest(bk: Path) -> None:
    (bk / "manifest.json").unlink()


def _newer_format(bk: Path) -> None:
    manifest = json.loads((bk / "manifest.json").read_text())
    (bk / "manifest.json").write_text(json.dumps({**manifest, "format": 99}))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (_flip_byte, "does not match its sha256"),
        (_truncate, "kbloop.db is truncated"),
        (_delete, "models/aliases.json is missing"),
        (_bad_integrity, "kbloop.db fails PRAGMA integrity_check"),
        (_escaping_path, "invalid file entry"),
        (_no_manifest, "not a kbloop backup"),
        (_newer_format, "format 99"),
    ],
)
def test_a_corrupt_backup_is_refused_before_anything_changes(
    data: Path, tmp_path: Path, damage: Any, message: str
) -> None:
    backup(data, tmp_path / "bk")
    damage(tmp_path / "bk")
    before = tree(data)
    with pytest.raises(BackupCorrupt, match=message):
        verify(tmp_path / "bk")
    with pytest.raises(BackupCorrupt, match=message):
        restore(tmp_path / "bk", data, force=True)
    assert tree(data) == before
    assert not list(tmp_path.glob(".var.*"))


def test_a_restore_failing_midway_leaves_the_old_data_dir(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.backup

    backup(data, tmp_path / "bk")
    with Store(data / "kbloop.db") as store:
        store.record_answer(make_record("after-backup", user_id="u-alice"))
    before = tree(data)
    real = service.backup._copy_file
    calls = 0

    def fail_later(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 8:
            raise OSError(28, "No space left on device")
        return real(*args, **kwargs)

    monkeypatch.setattr(service.backup, "_copy_file", fail_later)
    with pytest.raises(service.backup.WriteFailed, match=r"No space left.*left as it was"):
        restore(tmp_path / "bk", data, force=True)
    assert tree(data) == before
    assert not list(tmp_path.glob(".var.*"))


def test_the_fallback_swap_and_recovery_from_a_kill_between_its_renames(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import service.backup

    backup(data, tmp_path / "bk")
    monkeypatch.setattr(service.backup, "_exchange", lambda a, b: False)  # no RENAME_EXCHANGE here
    (data / "extra.txt").write_text("replaced by the restore")
    restore(tmp_path / "bk", data, force=True)
    assert not (data / "extra.txt").exists() and not list(tmp_path.glob(".var.*"))

    # a restore killed between its two renames: the old data was put aside, nothing is at DATA_DIR
    before = tree(data)
    dead = subprocess.Popen(["true"])  # a process id that no longer runs
    dead.wait()
    data.rename(tmp_path / f".var.replaced-{dead.pid}")
    with pytest.raises(DataDirNotEmpty):  # the old data is back in place, and is not clobbered
        restore(tmp_path / "bk", data)
    assert tree(data) == before
    assert not list(tmp_path.glob(".var.*"))


KILLED_RESTORE = """
import sys, time
import service.backup as backup

real, calls = backup.{target}, 0

def pause():
    print("PAUSED", flush=True)
    time.sleep(120)

def paused(*args, **kwargs):
    global calls
    calls += 1
    if "{when}" == "before" and calls == {at}:
        pause()
    result = real(*args, **kwargs)
    if "{when}" == "after" and calls == {at}:
        pause()
    return result

backup.{target} = paused
from cli.app import app
app(["restore", sys.argv[1], "--force", "--quiet"])
"""


@pytest.mark.parametrize(
    ("where", "target", "when", "at", "expect"),
    [
        ("while copying", "_copy_file", "before", 5, "old"),
        ("after the swap", "_exchange", "after", 1, "new"),
    ],
)
def test_a_restore_killed_with_sigkill_leaves_old_or_new_never_a_mix(
    data: Path, tmp_path: Path, where: str, target: str, when: str, at: int, expect: str
) -> None:
    backup(data, tmp_path / "bk")
    with Store(data / "kbloop.db") as store:
        store.record_answer(make_record("after-backup", user_id="u-alice"))
    (data / "only-in-old.txt").write_text("old")
    old = tree(data)
    new = tree(tmp_path / "bk")
    new.pop("manifest.json")
    code = KILLED_RESTORE.format(target=target, when=when, at=at)
    env = {**os.environ, "KBLOOP_DATA_DIR": str(data)}
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "bk")], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    try:
        line = child.stdout.readline()
        assert line.strip() == "PAUSED", f"{where}: child ended early: {child.stderr.read()}"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert list(tmp_path.glob(".var.restore-*")), "the kill left no staging folder: it came too late"
    now = tree(data)
    if expect == "old":
        assert now == old
    else:
        assert now == new
        with Store(data / "kbloop.db") as store:
            assert store.count_answers() == 10 and store.integrity_check()
    # the next restore clears what the killed one left and succeeds
    restore(tmp_path / "bk", data, force=True)
    assert not list(tmp_path.glob(".var.*"))
    assert tree(data) == new


WRITER = """
import sys
from pathlib import Path
from feedback import Store
from tests.feedback.factory import make_record

store = Store(Path(sys.argv[1]))
for i in range(100_000):
    rec = make_record(f"w-{i}", user_id="u-bob", prompt="context " * 2000)
    # an answer and its vote in one transaction: a snapshot holds both or neither
    vote = lambda i=i: store.vote(f"w-{i}", "u-bob", "up")
    store.run_batch([lambda rec=rec: store.record_answer(rec), vote])
    print(i, flush=True)
"""


def test_backup_while_another_process_writes_is_consistent(tmp_path: Path) -> None:
    data = tmp_path / "var"
    db = data / "kbloop.db"
    Store(db).close()
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], cwd=REPO, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    try:
        for _ in range(50):  # let it get going
            assert child.stdout.readline(), child.stderr.read()
        acknowledged = int(child.stdout.readline())  # committed before the backup started
        manifests = [backup(data, tmp_path / f"bk{n}") for n in range(3)]
        conn = sqlite3.connect(tmp_path / "bk2" / "kbloop.db")
        in_last = conn.execute("SELECT count(*) FROM answers").fetchone()[0]
        conn.close()
        while int(child.stdout.readline()) < in_last + 5:
            pass  # the writer kept going: the backups did not stop it
    finally:
        child.kill()
        child.wait(timeout=30)
    counts = []
    for n, manifest in enumerate(manifests):
        copy = tmp_path / f"bk{n}" / "kbloop.db"
        assert manifest["databases"]["kbloop.db"]["integrity_check"] == "ok"
        assert integrity_check(copy) == "ok"
        conn = sqlite3.connect(copy)
        answers = [int(r[0][2:]) for r in conn.execute("SELECT answer_id FROM answers")]
        votes = {r[0] for r in conn.execute("SELECT answer_id FROM votes")}
        conn.close()
        assert sorted(answers) == list(range(len(answers)))  # a prefix of the writes: no gaps
        assert votes == {f"w-{i}" for i in answers}  # whole transactions only
        assert len(answers) > acknowledged
        counts.append(len(answers))
    assert counts == sorted(counts)
    restore(tmp_path / "bk2", tmp_path / "restored")
    with Store(tmp_path / "restored" / "kbloop.db") as store:
        assert store.count_answers() == counts[-1] and store.integrity_check()


def test_cli_backup_restore_and_named_errors(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.app import app
    from core.settings import get_settings

    monkeypatch.setenv("KBLOOP_DATA_DIR", str(data))
    monkeypatch.delenv("KBLOOP_INDEX_DIR", raising=False)
    get_settings.cache_clear()
    runner = CliRunner()
    done = runner.invoke(app, ["backup", str(tmp_path / "bk")])
    assert done.exit_code == 0, done.output
    assert "databases kbloop.db, models/registry.db (integrity ok)" in done.output
    done = runner.invoke(app, ["backup", str(tmp_path / "bk"), "-q"])
    assert done.exit_code == 2 and "error [destination_exists]" in done.output
    done = runner.invoke(app, ["restore", str(tmp_path / "bk"), "--verify-only"])
    assert done.exit_code == 0 and "is sound" in done.output
    done = runner.invoke(app, ["restore", str(tmp_path / "bk")])
    assert done.exit_code == 2 and "error [data_dir_not_empty]" in done.output
    done = runner.invoke(app, ["restore", str(tmp_path / "bk"), "--force", "-q"])
    assert done.exit_code == 0 and "restored backup" in done.output
    _truncate(tmp_path / "bk")
    done = runner.invoke(app, ["restore", str(tmp_path / "bk"), "--force"])
    assert done.exit_code == 2 and "error [backup_corrupt]" in done.output and "truncated" in done.output
    done = runner.invoke(app, ["restore", str(tmp_path / "missing")])
    assert done.exit_code == 2 and "error [source_missing]" in done.output
