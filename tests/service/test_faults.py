"""Faults from outside: the server killed with SIGKILL while it writes feedback, an ingest killed
midway, and a full disk under the data directory. After each: integrity_check passes, no acknowledged
write is missing, the index's current version loads and searches, and the registry's champion is a
version that exists.

Related tests elsewhere, not repeated here: tests/feedback/test_concurrency.py and
test_group_commit.py kill a process writing through the Store / GroupCommit directly (this file kills
the HTTP server); tests/trainer/test_resume.py kills a training run with SIGKILL and resumes it to the
same result; tests/rag/test_index.py raises inside an ingest's write.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from feedback import Store
from tests.conftest import CORPUS, REPO
from tests.feedback.factory import make_record
from tests.service.conftest import PARKING, ask

pytestmark = pytest.mark.timeout(300)

THREADS = 6
USER = "local"  # the anonymous employee of a server bound to loopback without tokens


def seed_answers(db: Path, n: int) -> list[str]:
    with Store(db) as store:
        for i in range(n):
            store.record_answer(make_record(f"a-{i}", user_id=USER, conversation_id=f"c-{i}"))
    return [f"a-{i}" for i in range(n)]


def check_registry(models: Path) -> None:
    """The champion resolves to a version folder with its manifest."""
    from registry.registry import Registry

    registry = Registry(models)
    champion = registry.aliases()["champion"]
    assert (models / "versions" / champion / "manifest.json").exists()
    assert registry.version("champion").id == champion


def check_store(db: Path, votes: dict[str, str], corrections: set[str]) -> None:
    """integrity_check passes and every acknowledged vote and correction is stored."""
    with Store(db) as store, store.snapshot() as conn:
        assert store.integrity_check()
        stored_votes = dict(conn.execute("SELECT answer_id, value FROM votes").fetchall())
        stored_corrections = {row[0] for row in conn.execute("SELECT correction_id FROM corrections")}
    missing = {a: v for a, v in votes.items() if stored_votes.get(a) != v}
    assert not missing, f"acknowledged votes missing: {missing}"
    lost = corrections - stored_corrections
    assert not lost, f"acknowledged corrections missing: {lost}"


# -- a full disk ----------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs (needs root, or CAP_SYS_ADMIN), unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A ballast file that leaves about `leave` bytes free on `disk`."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    ballast = disk / "ballast"
    with ballast.open("wb") as fh:
        fh.write(b"\0" * max(0, free - leave))
    return ballast


def test_feedback_on_a_full_disk_is_refused_clearly_and_nothing_acknowledged_is_lost(
    small_disk: Path, make_client: Callable[..., TestClient]
) -> None:
    data = small_disk / "var"
    answers = seed_answers(data / "kbloop.db", 40)
    client = make_client(data_dir=data)
    ballast = fill(small_disk, leave=256 * 1024)
    votes: dict[str, str] = {}
    corrections: set[str] = set()
    refusals: list[httpx.Response] = []
    for n in range(400):
        answer = answers[n % len(answers)]
        started = time.monotonic()
        r = client.post(f"/api/answers/{answer}/correction", json={"text": f"correction {n} " + "x" * 6000})
        assert time.monotonic() - started < 30, "a write on a full disk hung"
        if r.status_code == 200:
            corrections.add(r.json()["correction_id"])
            continue
        refusals.append(r)
        if len(refusals) == 5:
            break
    assert refusals, "the disk never filled up"
    assert len(corrections) > 5, "the disk was full from the start"
    for r in refusals:
        assert r.status_code == 507, r.text
        assert r.json()["error"]["code"] == "store_full"
        assert "disk" in r.json()["error"]["message"]
    assert refusals[0].headers["Retry-After"] == "60"
    r = client.post(f"/api/answers/{answers[0]}/vote", json={"value": "down"})
    assert r.status_code == 507 and r.json()["error"]["code"] == "store_full", r.text
    # an answer that cannot be recorded is not handed out either: it could never be voted on
    r = client.post("/v1/chat/completions", json=ask(PARKING, max_tokens=4))
    assert r.status_code == 507 and r.json()["error"]["code"] == "store_full", r.text
    assert client.get("/healthz").status_code == 200

    ballast.unlink()  # space again: writes work without a restart
    for answer in answers[:10]:
        r = client.post(f"/api/answers/{answer}/vote", json={"value": "up"})
        assert r.status_code == 200, r.text
        votes[answer] = "up"
    r = client.post(f"/api/answers/{answers[1]}/correction", json={"text": "after the disk was freed"})
    assert r.status_code == 200, r.text
    corrections.add(r.json()["correction_id"])
    client.__exit__(None, None, None)
    check_store(data / "kbloop.db", votes, corrections)
    check_registry(data / "models")


def write_docs(folder: Path, n: int, generation: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"policy-{i:03d}.md").write_text(
            f"# Policy {i}\n\n## Rules\n\nGeneration {generation}: the office plant number {i} is watered "
            f"on day {i % 28 + 1} of each month by the facilities team; call extension {4000 + i}.\n"
        )


def test_ingest_into_a_full_disk_fails_cleanly_and_keeps_the_previous_version(
    small_disk: Path, tmp_path: Path, embedder: Any
) -> None:
    from rag.config import RagConfig
    from rag.errors import RagError
    from rag.index import current_version, list_versions, load_version
    from rag.ingest import ingest
    from rag.search import Retriever

    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    index = small_disk / "var" / "index"
    first = ingest([corpus], index, RagConfig(), embedder=embedder)
    write_docs(corpus / "more", 80)
    ballast = fill(small_disk, leave=48 * 1024)
    with pytest.raises(RagError) as failed:
        ingest([corpus], index, RagConfig(), embedder=embedder)
    assert failed.value.code.value == "index_write_failed"
    assert "kB free on its disk" in str(failed.value) and "stays current" in str(failed.value)
    assert current_version(index) == first.version
    assert list_versions(index) == [first.version]
    assert not list((index / "versions").glob(".tmp-*")) and not list(index.glob(".CURRENT.*"))
    result = Retriever(index, RagConfig(), embedder=embedder).search("parking permit cost", k=3)
    assert result.index_version == first.version and result.hits[0].source == "policies/parking.md"

    ballast.unlink()
    second = ingest([corpus], index, RagConfig(), embedder=embedder)
    assert second.published and current_version(index) == second.version != first.version
    assert len(load_version(index).chunks) > len(load_version(index, first.version).chunks)


def test_backup_and_restore_on_a_full_disk_fail_cleanly(small_disk: Path, tmp_path: Path) -> None:
    from service.backup import WriteFailed, backup, restore

    big = tmp_path / "var"
    seed_answers(big / "kbloop.db", 20)
    (big / "runs" / "ppo-1").mkdir(parents=True)
    (big / "runs" / "ppo-1" / "state.pt").write_bytes(os.urandom(5 * 1024 * 1024))  # over the 4 MB disk
    with pytest.raises(WriteFailed, match="No space left on device"):
        backup(big, small_disk / "bk")
    assert not list(small_disk.iterdir()), "a failed backup left files behind"

    backup(big, tmp_path / "bk")
    small = small_disk / "var"
    seed_answers(small / "kbloop.db", 3)
    with pytest.raises(WriteFailed, match="left as it was"):
        restore(tmp_path / "bk", small, force=True)
    assert [p.name for p in small_disk.iterdir()] == ["var"], "a failed restore left its staging copy"
    with Store(small / "kbloop.db") as store:
        assert store.count_answers() == 3 and store.integrity_check()


# -- the server killed while it writes feedback ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Server:
    """`kbloop serve` in a process of its own, on the tiny model and the fixture index."""

    def __init__(self, data: Path, index: Path, model: Path, log: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "KBLOOP_DATA_DIR": str(data), "KBLOOP_INDEX_DIR": str(index),
               "KBLOOP_MODEL": str(model), "KBLOOP_DEVICE": "cpu", "KBLOOP_PORT": str(self.port),
               "KBLOOP_MAX_TOKENS_DEFAULT": "8"}  # fmt: skip
        self.log = log
        with log.open("ab") as out:
            command = [sys.executable, "-m", "cli", "serve", "--log-level", "warning"]
            self.proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 180) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"the server exited:\n{self.log.read_text()[-3000:]}"
            try:
                r = httpx.get(f"{self.base}/readyz", timeout=5)
                if r.status_code == 200:
                    body: dict[str, Any] = r.json()
                    return body
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the server was not ready in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def test_server_killed_with_sigkill_during_feedback_writes_loses_no_acknowledged_write(
    tmp_path: Path, fixture_index: Path, tiny_model_dir: Path
) -> None:
    data = tmp_path / "var"
    with Store(data / "kbloop.db") as store:  # one transaction: seeding must not take a fsync each
        store.run_batch(
            [lambda i=i: store.record_answer(make_record(f"a-{i}", user_id=USER)) for i in range(3000)]
        )
    server = Server(data, fixture_index, tiny_model_dir, tmp_path / "server.log")
    try:
        server.wait_ready()
        votes: dict[str, str] = {}  # answer -> the value acknowledged (each answer is voted on once)
        corrections: set[str] = set()
        unacknowledged = 0
        lock = threading.Lock()
        stop = threading.Event()

        def hammer(k: int) -> None:
            nonlocal unacknowledged
            with httpx.Client(base_url=server.base, timeout=30) as http:
                for n in range(k, 3000, THREADS):
                    if stop.is_set():
                        return
                    value = ("up", "down")[n % 2]
                    try:
                        if n % 3:
                            r = http.post(f"/api/answers/a-{n}/vote", json={"value": value})
                        else:
                            r = http.post(f"/api/answers/a-{n}/correction", json={"text": f"fixed {n}"})
                    except httpx.TransportError:  # the server died with this request in flight
                        with lock:
                            unacknowledged += 1
                        return
                    assert r.status_code == 200, r.text
                    with lock:
                        if n % 3:
                            votes[f"a-{n}"] = value
                        else:
                            corrections.add(r.json()["correction_id"])

        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(THREADS)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 120
        while len(votes) + len(corrections) < 300 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(server.proc.pid, signal.SIGKILL)  # mid-stream: the threads are still writing
        server.proc.wait(timeout=30)
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        assert len(votes) + len(corrections) >= 300, "the writes were too slow to reach the kill"
        assert unacknowledged > 0, "no request was in flight when the server was killed"
        check_store(data / "kbloop.db", votes, corrections)

        server = Server(data, fixture_index, tiny_model_dir, tmp_path / "server.log")  # and it comes back
        ready = server.wait_ready()
        assert ready["checks"]["index"] == fixture_version(fixture_index)
        r = httpx.post(f"{server.base}/api/answers/a-2999/vote", json={"value": "up"}, timeout=30)
        assert r.status_code == 200, r.text
    finally:
        server.stop()
    check_store(data / "kbloop.db", {**votes, "a-2999": "up"}, corrections)
    check_registry(data / "models")


def fixture_version(index: Path) -> str | None:
    from rag.index import current_version

    return current_version(index)


# -- an ingest killed midway ----------------------------------------------------------------------

KILLED_INGEST = """
import sys, time
import {module} as module

real = module.{name}

def paused(*args, **kwargs):
    print("PAUSED", flush=True)  # the test kills the process here
    time.sleep(120)
    return real(*args, **kwargs)

module.{name} = paused
from cli.app import app
app(["ingest", sys.argv[1], "--index", sys.argv[2], "--quiet"])
"""


@pytest.mark.parametrize(
    ("point", "module", "name", "expect"),
    [
        ("version files written, not yet renamed into place", "rag.index", "fsync_tree", "old"),
        ("version in place, CURRENT not yet moved", "rag.ingest", "publish", "old"),
        ("CURRENT moved, old versions not yet collected", "rag.ingest", "collect_garbage", "new"),
    ],
)
def test_ingest_killed_with_sigkill_leaves_a_complete_current_version(
    tmp_path: Path, embedder: Any, point: str, module: str, name: str, expect: str
) -> None:
    from rag.config import RagConfig
    from rag.index import current_version, list_versions, load_version
    from rag.ingest import ingest
    from rag.search import Retriever

    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    index = tmp_path / "var" / "index"
    old = ingest([corpus], index, RagConfig(), embedder=embedder).version
    write_docs(corpus / "more", 30)
    code = KILLED_INGEST.format(module=module, name=name)
    child = subprocess.Popen([sys.executable, "-c", code, str(corpus), str(index)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert child.stdout is not None and child.stderr is not None
    try:
        assert child.stdout.readline().strip() == "PAUSED", f"{point}: {child.stderr.read()[-3000:]}"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    current = current_version(index)
    if expect == "old":
        assert current == old, point
    else:
        assert current != old and current in list_versions(index), point
    if name == "fsync_tree":
        assert list((index / "versions").glob(".tmp-*")), "killed before the temporary version existed"
    if name == "publish":
        assert len(list_versions(index)) == 2  # the new version, complete, but not published
    version = load_version(index)
    assert version.version == current and len(version.chunks) == version.dense.ntotal
    retriever = Retriever(index, RagConfig(), embedder=embedder)
    assert retriever.search("parking permit cost", k=3).hits[0].source == "policies/parking.md"
    if expect == "new":
        assert retriever.search("office plant number 7 watered", k=1).hits[0].source == "more/policy-007.md"

    again = ingest([corpus], index, RagConfig(), embedder=embedder)  # a re-run succeeds
    assert current_version(index) == again.version
    assert again.published == (expect == "old")
    assert not list((index / "versions").glob(".tmp-*"))
    hits = Retriever(index, RagConfig(), embedder=embedder).search("office plant number 7 watered", k=1).hits
    assert hits[0].source == "more/policy-007.md"
