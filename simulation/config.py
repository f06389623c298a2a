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


@dataclass
class SimulationConfig:
    rounds: int = 2
    preference: str = "concise-cited"
    users: int = 6
    asks: int = 1  # times each train question is asked (and compared) per round, by different employees
    max_tokens: int = 48  # answer length, in collection and measurement alike
    heldout_samples: int = 2  # sampled (as served) held-out judgements per question, beside the greedy one
    canary_share: float = 0.5
    override: bool = False  # promote a candidate the promotion rule refused (recorded as an override)
    min_comparisons: int = 30  # live canary-vs-champion comparisons the promotion rule needs
    noise: float = 0.05  # standard deviation of an employee's judgement noise, in score units
    corrections: float = 0.25  # share of thumbs-down answers the employee rewrites as a correction
    concurrency: int = 4  # requests in flight (the engine batches them)
    seed: int = 0

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
