"""The data-parallel path: two processes (torchrun, gloo on CPU) train one reward model and publish once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_two_processes_train_and_publish_one_reward_model(tmp_path: Path, tiny_base: Path) -> None:
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to this python")
    pairs = tmp_path / "pairs.jsonl"
    with pairs.open("w") as fh:
        for i in range(24):
            prompt = f"<|im_start|>user\nWhere is HR {i}?<|im_end|>\n<|im_start|>assistant\n"
            fh.write(
                json.dumps({"prompt": prompt, "chosen": "Suite 410 [1]", "rejected": "The VPN drops."}) + "\n"
            )
    env = {**os.environ, "KBLOOP_DATA_DIR": str(tmp_path / "var"), "KBLOOP_MODEL": str(tiny_base)}
    out = tmp_path / "run"
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "-m", "cli.train", "reward", "--from-jsonl", str(pairs),
         "--output", str(out), "--device", "cpu", "--epochs", "2", "--batch-size", "2",
         "--learning-rate", "1e-3"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count('"folder"') == 1  # only the main process reports
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "succeeded"
    # each optimizer step takes one batch of 2 pairs from each of the 2 processes; 2 epochs
    train_pairs = int(manifest["metrics"]["train"]["pairs"])
    per_epoch = -(-train_pairs // 2) // 2
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert train_pairs >= 20 and steps == list(range(1, 2 * per_epoch + 1))
    assert (out / "output" / "kbloop_reward.json").exists()
    shutil.rmtree(tmp_path / "var", ignore_errors=True)


def test_a_launch_without_output_is_refused_clearly(tmp_path: Path, tiny_base: Path) -> None:
    # each process would name its own run folder (and miss the others' checkpoint)
    pairs = tmp_path / "pairs.jsonl"
    row = {"prompt": "Where is HR?", "chosen": "Suite 410", "rejected": "No idea"}
    pairs.write_text(json.dumps(row) + "\n")
    env = {
        **os.environ,
        "KBLOOP_DATA_DIR": str(tmp_path / "var"),
        "KBLOOP_MODEL": str(tiny_base),
        "WORLD_SIZE": "2",
        "RANK": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "cli.train", "reward", "--from-jsonl", str(pairs), "--device", "cpu"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "pass --output" in done.stderr
    assert not (tmp_path / "var" / "runs").exists()
