"""What a simulation is asked to do (`SimulationConfig`), the trainer's configs it refreshes with, and
the one error it stops on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainer.config import RewardConfig
from trainer.errors import TrainerError

if TYPE_CHECKING:
    from trainer.refresh import RefreshConfigs


class SimulationError(TrainerError):
    """The simulation cannot go on: the service is not ready, or an API call failed."""


def _f(default: Any, help: str, **bounds: float) -> Any:
    """A field with the help text (and the `min`/`max` bounds) of its `kbloop simulate` option."""
    return dataclasses.field(default=default, metadata={"help": help, **bounds})


@dataclass
class SimulationConfig:
    """What a simulation is asked to do; each field is an option of `kbloop simulate` (cli/simulate.py)."""

    rounds: int = _f(2, "Feedback → refresh → canary → promote rounds.", min=1)
    preference: str = _f("concise-cited", "The employees' hidden preference.")
    users: int = _f(6, "Simulated employees.", min=2)
    asks: int = _f(
        1, "Times each train question is asked and compared per round, by different employees.", min=1
    )
    max_tokens: int = _f(48, "Answer length, in collection, PPO and measurement alike.", min=1)
    heldout_samples: int = _f(
        2, "Sampled answer pairs (as served) judged per held-out question, beside the greedy one.", min=0
    )
    canary_share: float = _f(0.5, "Canary share of conversations.", min=0, max=1)
    override: bool = _f(False, "Promote candidates the promotion rule refuses (recorded as an override).")
    min_comparisons: int = _f(30, "Live canary-vs-champion comparisons the promotion rule needs.", min=1)
    noise: float = _f(0.05, "Employees' judgement noise: its standard deviation, in score units.", min=0)
    corrections: float = _f(
        0.25,
        "Share of thumbs-down answers an employee rewrites as a correction (SFT examples).",
        min=0,
        max=1,
    )
    concurrency: int = _f(4, "Requests in flight (the engine batches them).", min=1)
    seed: int = _f(0, "Seed: question split, employees, noise, training.")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def refresh_configs(
    *,
    max_tokens: int,
    ppo_iterations: int,
    reward_epochs: int,
    eval_limit: int,
    device: str = "auto",
    algo: str = "ppo",
    ppo_rollouts: int = 8,
    ppo_temperature: float | None = None,
) -> RefreshConfigs:
    """The trainer's configs for a simulation on the default models (CPU defaults otherwise)."""
    from trainer.config import PPOConfig, RefreshConfig
    from trainer.refresh import RefreshConfigs

    ppo = PPOConfig(
        iterations=ppo_iterations,
        rollout_batch=ppo_rollouts,
        temperature=PPOConfig.temperature if ppo_temperature is None else ppo_temperature,
        max_new_tokens=max_tokens,
        device=device,  # type: ignore[arg-type]
    )
    return RefreshConfigs(
        refresh=RefreshConfig(algo=algo),  # type: ignore[arg-type]
        reward=RewardConfig(epochs=reward_epochs, device=device),  # type: ignore[arg-type]
        ppo=ppo,
        eval_limit=eval_limit,
        eval_max_new_tokens=max_tokens,
    )
