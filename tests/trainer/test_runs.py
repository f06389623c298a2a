"""trainer.runs: a run folder resumes only with its own config, and its output appears only when complete."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainer.errors import TrainerError
from trainer.runs import Run, new_run_dir

CONFIG = {"seed": 0, "learning_rate": 1e-4}


def test_open_creates_a_run_and_reopens_it_with_the_same_config(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", "reward", CONFIG)
    assert json.loads((run.root / "config.json").read_text()) == CONFIG
    manifest = run.manifest()
    assert manifest["kind"] == "reward" and manifest["status"] == "running" and manifest["config"] == CONFIG
    run.fail(RuntimeError("out of memory"))
    again = Run.open(tmp_path / "run", "reward", dict(CONFIG))
    resumed = again.manifest()
    assert resumed["status"] == "running" and resumed["error"] is None and "resumed" in resumed
    assert resumed["created"] == manifest["created"]  # the same run, not a new one


def test_another_config_in_the_same_folder_is_refused(tmp_path: Path) -> None:
    Run.open(tmp_path / "run", "reward", CONFIG)
    with pytest.raises(TrainerError, match="another config"):
        Run.open(tmp_path / "run", "reward", {**CONFIG, "learning_rate": 2e-4})
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == CONFIG  # left as it was


def test_a_finished_run_is_not_reopened(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", "sft", CONFIG)
    run.checkpoint_dir.mkdir()
    (run.checkpoint_dir / "state.pt").write_bytes(b"x")
    run.succeed(metrics={"loss": 0.5})
    assert run.manifest()["status"] == "succeeded" and run.manifest()["metrics"] == {"loss": 0.5}
    assert not run.checkpoint_dir.exists()  # a finished run needs no checkpoint
    with pytest.raises(TrainerError, match="finished run"):
        Run.open(tmp_path / "run", "sft", CONFIG)


def test_fail_records_the_error(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", "ppo", CONFIG)
    run.fail(ValueError("no prompts"))
    manifest = run.manifest()
    assert manifest["status"] == "failed" and manifest["error"] == "ValueError: no prompts"
    assert "finished" in manifest


def test_publishing_renames_the_staging_folder_only_on_success(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", "sft", CONFIG)
    with pytest.raises(RuntimeError), run.publishing() as staging:
        (staging / "adapter.bin").write_text("half")
        raise RuntimeError("disk full")
    assert not run.output.exists()
    assert not (run.root / ".output.partial").exists()

    with run.publishing() as staging:
        (staging / "adapter.bin").write_text("whole")
        assert not run.output.exists()  # nothing complete-looking while it is written
    assert (run.output / "adapter.bin").read_text() == "whole"
    assert not (run.root / ".output.partial").exists()

    with run.publishing() as staging:  # publishing again replaces the output as a whole
        (staging / "other.bin").write_text("new")
    assert sorted(p.name for p in run.output.iterdir()) == ["other.bin"]


def test_metrics_tolerate_a_cut_last_line_and_truncate_drops_later_steps(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", "reward", CONFIG)
    for step in (1, 2, 3):
        run.log(step, {"loss": 1.0 / step})
    with (run.root / "metrics.jsonl").open("a") as fh:
        fh.write('{"step": 4, "lo')  # a kill in the middle of a write
    assert [m["step"] for m in run.metrics()] == [1, 2, 3]
    assert run.metrics()[1]["loss"] == 0.5 and "time" in run.metrics()[1]
    run.truncate_metrics(2)
    assert [m["step"] for m in run.metrics()] == [1, 2]
    run.log(3, {"loss": 0.25})  # a resumed run logs its steps again, on a line of their own
    assert [(m["step"], m["loss"]) for m in run.metrics()] == [(1, 1.0), (2, 0.5), (3, 0.25)]


def test_metrics_of_a_new_run_are_empty(tmp_path: Path) -> None:
    assert Run.open(tmp_path / "run", "reward", CONFIG).metrics() == []


def test_new_run_dirs_started_in_the_same_second_are_distinct(tmp_path: Path) -> None:
    first = new_run_dir(tmp_path / "runs", "refresh")
    second = new_run_dir(tmp_path / "runs", "refresh")
    assert first != second and first.is_dir() and second.is_dir()
    assert first.name.startswith("refresh-") and second.name.startswith("refresh-")
    run = Run.open(second, "refresh", {"a": 1})  # an empty fresh folder is a new run, not a resumed one
    assert run.manifest()["status"] == "running" and "resumed" not in run.manifest()


def test_a_secondary_process_reads_the_folder_and_writes_nothing(tmp_path: Path) -> None:
    # under torchrun/accelerate launch every process opens the run; two writers raced on metrics.jsonl
    main = Run.open(tmp_path / "run", "reward", CONFIG)
    main.log(1, {"loss": 1.0})
    main.log(2, {"loss": 0.5})
    before = {p.name: p.read_bytes() for p in main.root.iterdir()}
    other = Run.open(tmp_path / "run", "reward", CONFIG, main=False)
    assert other.checkpoint_dir == main.checkpoint_dir
    assert {p.name: p.read_bytes() for p in main.root.iterdir()} == before
    assert "resumed" not in main.manifest()  # the fresh run is not stamped as resumed by another process


def test_truncating_metrics_keeps_steps_up_to_the_checkpoint(tmp_path: Path) -> None:
    run = Run.open(tmp_path / "run", "reward", CONFIG)
    for step in (1, 2, 3):
        run.log(step, {"loss": 1.0 / step})
    run.truncate_metrics(2)
    assert [m["step"] for m in run.metrics()] == [1, 2]
    assert sorted(p.name for p in run.root.iterdir()) == ["config.json", "manifest.json", "metrics.jsonl"]
