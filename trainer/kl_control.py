"""The KL coefficient β of the PPO reward penalty: fixed, or adapted toward a target KL.

Plain Python (no torch): the trainer passes the measured KL as a float and checkpoints the
controller with `state_dict()` / `load_state_dict()`.
"""

from __future__ import annotations

from typing import Any


class AdaptiveKLController:
    """Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences"), eq. 2.

    e = clip(KL / KL_target - 1, -0.2, 0.2);   β ← β·(1 + e·n_steps / horizon)
    β grows while the policy drifts further than the target and shrinks while it stays closer.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        if init_kl_coef < 0:
            raise ValueError(f"init_kl_coef must be >= 0, got {init_kl_coef}")
        if target <= 0:
            raise ValueError(f"target KL must be > 0, got {target}")
        if horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {horizon}")
        self.value = float(init_kl_coef)
        self.target = float(target)
        self.horizon = float(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Apply one update after n_steps samples measured a mean KL of current_kl; return β."""
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """The current β; target and horizon are configuration and come from the config."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore β from `state_dict()`."""
        self.value = float(state["value"])


class FixedKLController:
    """A constant β with the adaptive controller's interface; `update` changes nothing."""

    def __init__(self, kl_coef: float) -> None:
        if kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
        self.value = float(kl_coef)

    def update(self, current_kl: float, n_steps: int) -> float:
        """Return β unchanged."""
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """The (constant) β."""
        return {"value": self.value}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore β from `state_dict()`."""
        self.value = float(state["value"])


KLController = AdaptiveKLController | FixedKLController
