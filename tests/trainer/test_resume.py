"""A run interrupted after a checkpoint and started again in the same folder ends with exactly the weights of
a run that was never interrupted: weights, optimizer, schedule, data order and every RNG are restored.

Dropout is on in these runs, so a resumed run that did not restore the RNG would come out different.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO
from tests.trainer.synthetic import chat_prompt, marker_pairs
from trainer import reward
from trainer.config import PPOConfig, RewardConfig
from trainer.ppo import PPOTrainer, Scorer
from trainer.reward import train_reward
from trainer.runs import Run

PAIRS = marker_pairs(32, seed=0)
REWARD_CONFIG = RewardConfig(
    device="cpu",
    epochs=2,  # 8 steps of 8 pairs; the interruption falls in the second epoch
    batch_size=8,
    learning_rate=1e-2,
    warmup_ratio=0.25,
    lora_dropout=0.1,
    checkpoint_every=1,
)


class Interrupted(Exception):
    pass


def fail_on_call(fn: Callable[..., Any], call: int) -> Callable[..., Any]:
    """`fn`, except that its `call`-th call raises (a crash in the middle of training)."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == call:
            raise Interrupted(f"call {call}")
        return fn(*args, **kwargs)

    return wrapper


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys() and a
    for name in a:
        assert torch.equal(a[name], b[name]), name


def logged(run_dir: Path) -> list[dict[str, Any]]:
    return [
        {k: v for k, v in m.items() if k != "time" and not k.startswith("seconds")}
        for m in Run(run_dir).metrics()
    ]


def train_reward_in(root: Path, base: Path) -> None:
    train_reward(
        base=str(base), cfg=REWARD_CONFIG, run=Run.open(root, "reward", REWARD_CONFIG.to_json()), pairs=PAIRS
    )


def test_reward_model_resumed_after_a_crash_is_identical(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_reward_in(tmp_path / "straight", tiny_base)

    monkeypatch.setattr(reward, "reward_loss", fail_on_call(reward.reward_loss, call=6))
    with pytest.raises(Interrupted):
        train_reward_in(tmp_path / "crashed", tiny_base)
    monkeypatch.undo()
    crashed = Run(tmp_path / "crashed")
    assert not crashed.output.exists() and not (crashed.root / ".output.partial").exists()
    assert torch.load(crashed.checkpoint_dir / "state.pt", weights_only=False)["step"] == 5
    train_reward_in(tmp_path / "crashed", tiny_base)  # the same command again

    straight, resumed = tmp_path / "straight" / "output", tmp_path / "crashed" / "output"
    assert_same_tensors(
        load_file(straight / "adapter" / "adapter_model.safetensors"),
        load_file(resumed / "adapter" / "adapter_model.safetensors"),
    )
    meta = [json.loads((out / "kbloop_reward.json").read_text()) for out in (straight, resumed)]
    assert meta[0]["mean"] == meta[1]["mean"] and meta[0]["std"] == meta[1]["std"]
    assert logged(tmp_path / "crashed") == logged(tmp_path / "straight")  # no step logged twice or lost
    assert "resumed" in crashed.manifest() and crashed.manifest()["status"] == "succeeded"


# -- PPO ------------------------------------------------------------------------------------------
PPO_CONFIG = PPOConfig(
    device="cpu",
    iterations=4,
    rollout_batch=6,
    mini_batch=3,
    max_new_tokens=4,
    learning_rate=1e-2,
    lora_dropout=0.1,
    adaptive_kl=True,
    target_kl=0.1,
    kl_horizon=10,
    checkpoint_every=1,
)
PROMPTS = [chat_prompt(q) for q in ("Where is HR", "The VPN drops", "What does parking cost")]
SCORER = Scorer(lambda prompts, responses: [float(r.count(" ")) for r in responses], mean=1.0, std=2.0)


def ppo_in(root: Path, base: Path) -> None:
    run = Run.open(root, "ppo", PPO_CONFIG.to_json())
    PPOTrainer(base=str(base), parent_adapter=None, reward=SCORER, cfg=PPO_CONFIG, run=run).train(PROMPTS)


def test_ppo_resumed_after_a_crash_is_identical(
    peaky_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ppo_in(tmp_path / "straight", peaky_base)

    monkeypatch.setattr(PPOTrainer, "update", fail_on_call(PPOTrainer.update, call=3))
    with pytest.raises(Interrupted):
        ppo_in(tmp_path / "crashed", peaky_base)
    monkeypatch.undo()
    crashed = Run(tmp_path / "crashed")
    assert not crashed.output.exists()
    assert torch.load(crashed.checkpoint_dir / "state.pt", weights_only=False)["iteration"] == 2
    ppo_in(tmp_path / "crashed", peaky_base)

    straight, resumed = tmp_path / "straight" / "output", tmp_path / "crashed" / "output"
    assert_same_tensors(
        load_file(straight / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    )
    assert_same_tensors(
        torch.load(straight / "value_head.pt", weights_only=True),
        torch.load(resumed / "value_head.pt", weights_only=True),
    )
    # same samples, same rewards, same KL coefficient path
    assert logged(tmp_path / "crashed") == logged(tmp_path / "straight")
    assert len({m["kl_coef"] for m in logged(tmp_path / "straight")}) > 1  # the controller did move


# -- a real kill ----------------------------------------------------------------------------------
SCRIPT = """
import sys, time
import torch
torch.set_num_threads(1)
from pathlib import Path
from tests.trainer import test_resume as t
from trainer import reward
loss = reward.reward_loss
def slow_loss(*args, **kwargs):
    time.sleep(0.15)  # time for the test to kill it somewhere in the middle
    return loss(*args, **kwargs)
reward.reward_loss = slow_loss
t.train_reward_in(Path(sys.argv[1]), Path(sys.argv[2]))
"""


def test_reward_model_killed_with_sigkill_resumes_to_the_same_result(tiny_base: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "killed"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(run_dir), str(tiny_base)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )
    state = run_dir / "checkpoint" / "state.pt"
    deadline = time.monotonic() + 120
    while not state.exists():
        assert child.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        assert not (run_dir / "output").exists()
        time.sleep(0.01)
    time.sleep(0.2)  # one or two steps further, wherever that lands
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    assert not (run_dir / "output").exists()  # nothing complete-looking after the kill
    assert 1 <= torch.load(state, weights_only=False)["step"] < 8  # it died mid-run
    assert Run(run_dir).manifest()["status"] == "running"

    train_reward_in(run_dir, tiny_base)  # run it again: it resumes from the checkpoint
    train_reward_in(tmp_path / "straight", tiny_base)
    assert_same_tensors(
        load_file(tmp_path / "straight" / "output" / "adapter" / "adapter_model.safetensors"),
        load_file(run_dir / "output" / "adapter" / "adapter_model.safetensors"),
    )
    assert logged(run_dir) == logged(tmp_path / "straight")


def test_a_crash_before_the_first_checkpoint_starts_afresh_without_doubled_metrics(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = RewardConfig(**{**REWARD_CONFIG.to_json(), "checkpoint_every": 5, "max_steps": 4})
    run = Run.open(tmp_path / "run", "reward", cfg.to_json())
    monkeypatch.setattr(reward, "reward_loss", fail_on_call(reward.reward_loss, call=3))
    with pytest.raises(Interrupted):
        train_reward(base=str(tiny_base), cfg=cfg, run=run, pairs=PAIRS)
    monkeypatch.undo()
    assert [m["step"] for m in run.metrics()] == [1, 2] and not run.checkpoint_dir.exists()
    train_reward(
        base=str(tiny_base), cfg=cfg, run=Run.open(tmp_path / "run", "reward", cfg.to_json()), pairs=PAIRS
    )
    assert [m["step"] for m in run.metrics()] == [1, 2, 3, 4]  # steps 1 and 2 were done again, logged once
