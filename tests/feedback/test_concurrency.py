"""Many threads, a second process, and a process killed mid-write: no lost or broken answers."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from feedback import Store
from feedback.migrations import MIGRATIONS
from tests.conftest import REPO
from tests.feedback.factory import make_record, run_threads

pytestmark = pytest.mark.timeout(60)

THREADS, PER_THREAD = 8, 50


def test_threads_sharing_one_store_lose_nothing(tmp_path: Path) -> None:
    with Store(tmp_path / "feedback.db") as store:

        def write(k: int) -> None:
            for i in range(PER_THREAD):
                rec = make_record(f"t{k}-{i}", conversation_id=f"c{k}")
                assert store.record_answer(rec) is True
                assert store.get_answer(rec.answer_id) == rec  # reads interleave with other threads' writes

        run_threads(write, THREADS)
        assert store.count_answers() == THREADS * PER_THREAD
        ids = {r.answer_id for r in store.list_answers(limit=1000)}
        assert ids == {f"t{k}-{i}" for k in range(THREADS) for i in range(PER_THREAD)}
        assert all(store.count_answers(conversation_id=f"c{k}") == PER_THREAD for k in range(THREADS))
        assert store.integrity_check()


def test_stores_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"

    def open_and_write(k: int) -> None:
        with Store(path) as store:  # each its own connection: like separate processes
            for i in range(10):
                store.record_answer(make_record(f"s{k}-{i}"))

    run_threads(open_and_write, 4)
    with Store(path) as store:
        assert store.count_answers() == 40
        assert store._db.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)


def _child(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _expect_line(proc: subprocess.Popen[str], expected: str) -> None:
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline().strip()
    if line != expected:
        proc.kill()
        pytest.fail(f"child said {line!r}, expected {expected!r}; stderr:\n{proc.stderr.read()}")


WRITER = """
import sys, time
from pathlib import Path
from feedback import Store
from tests.feedback.factory import make_record, run_threads

with Store(Path(sys.argv[1])) as store:
    print("ready", flush=True)
    sys.stdin.readline()
    n = int(sys.argv[2])
    for i in range(n):
        if i == n // 2:  # halfway, wait for a row from the other process: the writes must overlap
            deadline = time.monotonic() + 20
            while store.count_answers() == i and time.monotonic() < deadline:
                time.sleep(0.005)
        assert store.record_answer(make_record(f"proc-{i}", user_id="u-trainer")) is True
print("done", flush=True)
"""


def _wait_for_other_writer(store: Store, mine: int) -> None:
    deadline = time.monotonic() + 20
    while store.count_answers() == mine:
        assert time.monotonic() < deadline, "the other process wrote nothing"
        time.sleep(0.005)


def test_a_second_process_writing_at_the_same_time_loses_nothing(tmp_path: Path) -> None:
    path, n = tmp_path / "feedback.db", 200
    with Store(path) as store:
        child = _child(WRITER, str(path), str(n))
        try:
            _expect_line(child, "ready")
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
            for i in range(n):
                if i == n // 2:
                    _wait_for_other_writer(store, i)
                assert store.record_answer(make_record(f"main-{i}")) is True
            _expect_line(child, "done")
            assert child.wait(timeout=30) == 0
        finally:
            if child.poll() is None:
                child.kill()
        ids = {r.answer_id for r in store.list_answers(limit=1000)}
        assert ids == {f"{who}-{i}" for who in ("main", "proc") for i in range(n)}
        assert store.count_answers() == 2 * n
        assert store.integrity_check()
        # each side waited halfway for the other, so the rows interleave: neither ran after the other
        order = [
            row[0].split("-")[0] for row in store._db.execute("SELECT answer_id FROM answers ORDER BY rowid")
        ]
        assert sum(a != b for a, b in itertools.pairwise(order)) >= 2


KILLED = """
import sys
from pathlib import Path
from feedback import Store
from tests.feedback.factory import make_record, run_threads

store = Store(Path(sys.argv[1]))
for i in range(1_000_000):
    answer_id = f"k-{i:07d}"
    store.record_answer(make_record(answer_id, prompt="context " * 2000))
    print(answer_id, flush=True)  # only after the commit returned: an acknowledged answer
"""


def test_a_writer_killed_mid_loop_leaves_every_acknowledged_answer(tmp_path: Path) -> None:
    path = tmp_path / "feedback.db"
    child = _child(KILLED, str(path))
    assert child.stdout is not None and child.stderr is not None
    acknowledged: list[str] = []
    try:
        while len(acknowledged) < 60:
            line = child.stdout.readline()
            if not line:
                pytest.fail(f"child stopped early; stderr:\n{child.stderr.read()}")
            acknowledged.append(line.strip())
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    # lines the child printed before it died count too; a torn last line does not
    rest = child.stdout.read()
    acknowledged += [line for line in rest.split("\n")[:-1] if line]
    assert child.returncode == -signal.SIGKILL

    with Store(path) as store:
        assert store.integrity_check() is True
        stored = {r.answer_id for r in store.list_answers(limit=1000)}
        assert set(acknowledged) <= stored
        # at most one answer committed whose acknowledgement the kill cut off
        assert len(acknowledged) <= len(stored) <= len(acknowledged) + 1
        assert store.get_answer(acknowledged[-1]) == make_record(acknowledged[-1], prompt="context " * 2000)
