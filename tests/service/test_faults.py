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
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from feedback import Store
from tests.conftest import CORPUS
from tests.feedback.factory import make_record
from tests.service.conftest import PARKING, ask

pytestmark = pytest.mark.timeout(300)

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
    with Store(db) as store:
        assert store.integrity_check()
        stored_votes = {v.answer_id: v.value.value for v in store.list_votes(limit=1000)}
        stored_corrections = {c.correction_id for c in store.list_corrections(limit=1000)}
    missing = {a: v for a, v in votes.items() if stored_votes.get(a) != v}
    assert not missing, f"acknowledged votes missing: {missing}"
    assert corrections <= stored_corrections, (
        f"acknowledged corrections missing: {corrections - stored_corrections}"
    )


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
