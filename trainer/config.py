"""Typed training configs: dataclasses whose fields carry the help text the CLI shows.

The CPU defaults are sized from the measured costs in ARCHITECTURE.md (SmolLM2-135M, 2 cores: a
forward+backward+AdamW step on 8 × 300 tokens takes ~10 s), so one refresh on ~500 pairs and ~100
prompts fits in 30 minutes. On a GPU the same fields scale up (`--batch-size`, `--max-length`, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    """What every training run shares: optimisation, LoRA, checkpoints, data hygiene."""

    seed: int = _f(0, "Random seed: data order, initialisation, sampling. Same seed = same result.")
    learning_rate: float = _f(2e-4, "AdamW learning rate (LoRA parameters and heads).")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    epochs: int = _f(1, "Passes over the training data.")
    max_steps: int = _f(0, "Stop after this many optimizer steps (0 = run all epochs).")
    batch_size: int = _f(4, "Examples per forward pass.")
    grad_accum: int = _f(1, "Forward passes accumulated per optimizer step.")
    max_length: int = _f(512, "Longest prompt + response in tokens; longer prompts are cut from the left.")
    max_grad_norm: float = _f(1.0, "Gradient clipping by global norm.")
    warmup_ratio: float = _f(0.05, "Share of steps with a linear learning-rate warm-up.")
    lora_r: int = _f(16, "LoRA rank.")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "LoRA dropout.")
    lora_targets: str = _f("q_proj,k_proj,v_proj,o_proj", "Comma-separated module names LoRA adapts.")
    heldout_fraction: float = _f(0.1, "Share of prompts kept out of training for evaluation.")
    per_user_cap: int = _f(200, "Most examples one user contributes (0 = no cap).")
    checkpoint_every: int = _f(10, "Save a resumable checkpoint every N optimizer steps.")
    log_every: int = _f(1, "Write metrics every N optimizer steps.")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "auto = CUDA with bf16 when present, else CPU.")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SFTConfig(TrainConfig):
    """Supervised fine-tuning on demonstrations (corrections + golden answers)."""

    epochs: int = _f(2, "Passes over the demonstrations.")
    golden: bool = _f(True, "Add the golden set's ideal answers as demonstrations.")


@dataclass
class RewardConfig(TrainConfig):
    """Reward model: Bradley–Terry on pairs plus weighted BCE on thumbs."""

    learning_rate: float = _f(1e-4, "AdamW learning rate.")
    max_length: int = _f(384, "Longest prompt + response in tokens (prompts cut from the left).")
    max_steps: int = _f(0, "Most optimizer steps per run (0 = every example once per epoch).")
    time_budget_min: float = _f(
        20.0,
        "Stop training after the step that passes this many minutes (0 = no limit), keeping a refresh "
        "within its time on 2 CPU cores; the run records how many examples it saw (`examples_seen`, "
        "`stopped_by`). With pairs only, batches are grouped by length (less padding).",
    )
    thumbs_weight: float = _f(0.5, "Weight of the thumbs BCE term beside the pairwise loss.")
    lora: bool = _f(True, "Train LoRA adapters (+ the score head) instead of the whole model.")
    warm_start: str = _f("", "Previous reward model folder to continue from ('' = from the policy base).")
    stats_sample: int = _f(
        128, "Training pairs (and half as many thumbs) scored after training for the reward mean/std."
    )


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimisation on the same pairs, against the champion as reference."""

    learning_rate: float = _f(5e-5, "AdamW learning rate.")
    beta: float = _f(0.1, "DPO temperature: strength of the implicit KL anchor.")
    label_smoothing: float = _f(0.0, "Conservative DPO: assumed share of flipped labels.")
    kl_budget: float = _f(12.0, "Most KL to the champion per response; above it the result is not published.")
    kl_samples: int = _f(8, "Answers sampled after training to measure the KL to the champion.")
    kl_max_new_tokens: int = _f(48, "Longest of those answers.")


@dataclass
class PPOConfig(TrainConfig):
    """PPO against the reward model, KL-anchored to the champion."""

    learning_rate: float = _f(1e-4, "AdamW learning rate (policy LoRA + value head).")
    iterations: int = _f(4, "Rollout + update rounds.")
    rollout_batch: int = _f(8, "Prompts sampled per iteration.")
    max_new_tokens: int = _f(48, "Longest sampled response.")
    max_prompt_tokens: int = _f(320, "Prompts longer than this are cut from the left.")
    temperature: float = _f(1.0, "Sampling temperature of the rollouts.")
    top_p: float = _f(1.0, "Nucleus sampling of the rollouts.")
    ppo_epochs: int = _f(2, "Update passes over each rollout batch.")
    mini_batch: int = _f(4, "Rollouts per gradient step inside an update pass.")
    clip_range: float = _f(0.2, "PPO ratio clip.")
    clip_range_value: float = _f(0.2, "Value-function clip around the rollout values.")
    vf_coef: float = _f(0.1, "Weight of the value loss.")
    entropy_coef: float = _f(0.0, "Weight of the entropy bonus.")
    gamma: float = _f(1.0, "Discount.")
    lam: float = _f(0.95, "GAE lambda.")
    init_kl_coef: float = _f(0.05, "Initial β of the per-token KL penalty.")
    adaptive_kl: bool = _f(True, "Adapt β towards `target_kl` (Ziegler et al.).")
    target_kl: float = _f(6.0, "Target total KL per response for the adaptive controller.")
    kl_horizon: int = _f(10000, "Adaptive controller horizon.")
    kl_estimator: Literal["k1", "k3", "abs", "mse"] = _f("k1", "Per-token KL estimator in the reward.")
    max_approx_kl: float = _f(0.5, "Stop an update epoch early when approx-KL exceeds this.")
    kl_budget: float = _f(12.0, "Refuse to publish a candidate whose mean KL to the champion exceeds this.")
    reward_model: str = _f("", "Reward model folder ('' = the newest one under DATA_DIR/reward).")
    checkpoint_every: int = _f(1, "Save a resumable checkpoint every N iterations.")
    log_every: int = _f(1, "Write metrics every N iterations.")


@dataclass
class RefreshConfig:
    """The configured pipeline from the store: reward model update, then PPO (or DPO)."""

    algo: Literal["ppo", "dpo"] = _f("ppo", "Policy update: PPO against the reward model, or DPO on pairs.")
    sft_first: bool = _f(False, "Run SFT on new demonstrations before the policy update.")
    full_retrain: bool = _f(False, "Train the reward model from the policy base instead of warm-starting.")
    replay_ratio: float = _f(1.0, "Old examples replayed per new one when the reward model warm-starts.")
    min_pairs: int = _f(20, "Fewest preference pairs + thumbs a refresh needs.")
    max_prompts: int = _f(100, "Most logged prompts used for PPO rollouts.")
    min_logged_prompts: int = _f(
        8,
        "Fewest held-out logged prompts for the gate's reward win rate alone (fewer: golden ones pooled in).",
    )
    seed: int = _f(0, "Random seed for the whole pipeline.")


def field_help(config_type: type) -> dict[str, str]:
    """Field name -> help text, for the CLI."""
    return {f.name: str(f.metadata.get("help", "")) for f in dataclasses.fields(config_type)}
