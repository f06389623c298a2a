"""trainer.kl_control: one exact update each way, clipping, checkpointing, the fixed controller."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO
from trainer.kl_control import AdaptiveKLController, FixedKLController


def controller() -> AdaptiveKLController:
    return AdaptiveKLController(init_kl_coef=0.2, target=6.0, horizon=10000)


def test_kl_above_target_raises_the_coefficient_by_the_clipped_error() -> None:
    kl = controller()
    # e = clip(9 / 6 - 1, ±0.2) = clip(0.5) = 0.2;  β = 0.2·(1 + 0.2·256 / 10000) = 0.2·1.00512
    assert kl.update(current_kl=9.0, n_steps=256) == pytest.approx(0.201024, abs=1e-12)
    assert kl.value == pytest.approx(0.201024, abs=1e-12)


def test_kl_below_target_lowers_the_coefficient() -> None:
    kl = controller()
    # e = clip(3 / 6 - 1) = clip(-0.5) = -0.2;  β = 0.2·(1 - 0.2·256 / 10000) = 0.2·0.99488
    kl.update(current_kl=3.0, n_steps=256)
    assert kl.value == pytest.approx(0.198976, abs=1e-12)


def test_small_error_is_used_unclipped_and_on_target_nothing_moves() -> None:
    kl = controller()
    # e = 6.6 / 6 - 1 = 0.1;  β = 0.2·(1 + 0.1·256 / 10000) = 0.2·1.00256
    kl.update(current_kl=6.6, n_steps=256)
    assert kl.value == pytest.approx(0.200512, abs=1e-12)
    kl = controller()
    kl.update(current_kl=6.0, n_steps=256)
    assert kl.value == 0.2


def test_updates_compound() -> None:
    kl = controller()
    kl.update(9.0, 5000)  # 0.2·(1 + 0.2·0.5) = 0.22
    kl.update(9.0, 5000)  # 0.22·1.1 = 0.242
    assert kl.value == pytest.approx(0.242, abs=1e-12)


def test_state_dict_round_trip_resumes_the_same_trajectory() -> None:
    kl = controller()
    kl.update(9.0, 256)
    resumed = controller()
    resumed.load_state_dict(kl.state_dict())
    assert resumed.value == kl.value != 0.2
    assert resumed.update(1.0, 100) == kl.update(1.0, 100)


def test_fixed_controller_never_moves_and_checkpoints() -> None:
    kl = FixedKLController(0.05)
    assert kl.update(current_kl=100.0, n_steps=1000) == 0.05
    assert kl.value == 0.05
    other = FixedKLController(0.3)
    other.load_state_dict(kl.state_dict())
    assert other.value == 0.05


@pytest.mark.parametrize(("init", "target", "horizon"), [(-0.1, 6.0, 100), (0.1, 0.0, 100), (0.1, 6.0, 0)])
def test_bad_settings_are_refused(init: float, target: float, horizon: float) -> None:
    with pytest.raises(ValueError):
        AdaptiveKLController(init, target, horizon)


def test_kl_control_does_not_import_torch() -> None:
    code = "import sys, trainer.kl_control; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_the_default_controller_moves_within_one_refresh() -> None:
    """With the PPO defaults (answers per iteration, horizon, iterations), a KL far above the target
    raises β by the compounded clipped error within one refresh: by 10% an iteration, ~77% in six."""
    from trainer.config import PPOConfig

    cfg = PPOConfig()
    kl = AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
    answers = cfg.rollout_batch * cfg.group_size
    for _ in range(cfg.iterations):
        kl.update(current_kl=10 * cfg.target_kl, n_steps=answers)
    step = 1 + 0.2 * answers / cfg.kl_horizon
    assert kl.value == pytest.approx(cfg.init_kl_coef * step**cfg.iterations)
    assert kl.value > 1.5 * cfg.init_kl_coef
