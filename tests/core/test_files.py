from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from core.files import atomic_path, fsync_tree, write_json, write_text_atomic


def test_write_json_replaces_the_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "manifest.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2, "where": tmp_path})  # a path is written as its text
    assert json.loads(path.read_text()) == {"a": 2, "where": str(tmp_path)}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_a_failed_write_keeps_the_old_content(tmp_path: Path) -> None:
    path = tmp_path / "aliases.json"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["aliases.json"]
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()}, default=json.JSONEncoder().default)
    assert path.read_text() == "old"


def test_concurrent_writers_never_leave_half_a_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    bodies = [{"writer": n, "payload": "x" * 20_000} for n in range(8)]
    threads = [threading.Thread(target=write_json, args=(path, body)) for body in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(path.read_text()) in bodies
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_fsync_tree_walks_files_and_folders(tmp_path: Path) -> None:
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "f.txt").write_text("x")
    fsync_tree(tmp_path)  # raises on a file it cannot open
    assert (tmp_path / "a" / "b" / "f.txt").read_text() == "x"
