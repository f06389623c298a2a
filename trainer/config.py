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
    max_length: int = _f(
        512, "Longest prompt + response in tokens; longer prompts drop their lowest-ranked passages."
    )
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

    epochs: int = _f(8, "Most passes over the demonstrations (fewer when `kl_limit` stops it).")
    golden: bool = _f(True, "Add the golden set's ideal answers as demonstrations.")
    kl_limit: float = _f(
        0.0,
        "SFT keeps the last epoch whose fresh answers are within this KL of the champion, per answer "
        "(0 = no limit; a refresh sets it to `sft_kl_share` of its KL budget).",
    )
    kl_check_every: int = _f(
        8,
        "With `kl_limit`: epochs between KL measurements while training (and one after the last); past the "
        "limit, training stops and a bisection over the saved epochs finds the last one within it.",
    )
    kl_samples: int = _f(8, "Fresh answers that measure the KL when `kl_limit` is set.")
    kl_max_new_tokens: int = _f(48, "Longest of those answers, in tokens.")


@dataclass
class RewardConfig(TrainConfig):
    """Reward model: Bradley–Terry on pairs plus weighted BCE on thumbs."""

    learning_rate: float = _f(1e-4, "AdamW learning rate.")
    max_length: int = _f(384, "Longest prompt + response in tokens (longer prompts drop passages).")
    max_steps: int = _f(0, "Most optimizer steps per run (0 = every example once per epoch).")
    time_budget_min: float = _f(
        20.0,
        "Stop training after the step that passes this many minutes (0 = no limit), keeping a refresh "
        "within its time on 2 CPU cores; the run records how many examples it saw (`examples_seen`, "
        "`stopped_by`). With pairs only, batches are grouped by length (less padding).",
    )
    thumbs_weight: float = _f(0.5, "Weight of the thumbs BCE term beside the pairwise loss.")
    share_prompts: bool = _f(
        True,
        "Train on every example of a prompt together (a step = `batch_size` prompts): the prompt runs once "
        "and its answers continue from its key/value cache. False: `batch_size` examples of any prompts, "
        "each sequence padded and run whole.",
    )
    lora: bool = _f(True, "Train LoRA adapters (+ the score head) instead of the whole model.")
    warm_start: str = _f("", "Previous reward model folder to continue from ('' = from the policy base).")
    stats_sample: int = _f(
        128, "Training pairs (and half as many thumbs) scored after training for the reward mean/std."
    )


@dataclass
class DPOConfig(TrainConfig):
    """Direct preference optimisation on the same pairs, against the champion as reference."""

    learning_rate: float = _f(5e-5, "AdamW learning rate.")
    max_length: int = _f(0, "Longest prompt + response in tokens (0 = p95 of the prompts + response_tokens).")
    response_tokens: int = _f(256, "Response budget added to the prompts' p95 when max_length is 0.")
    beta: float = _f(0.1, "DPO temperature: strength of the implicit KL anchor.")
    label_smoothing: float = _f(0.0, "Conservative DPO: assumed share of flipped labels.")
    kl_budget: float = _f(12.0, "Most KL to the champion per response; above it the result is not published.")
    kl_samples: int = _f(8, "Answers sampled after training to measure the KL to the champion.")
    kl_max_new_tokens: int = _f(48, "Longest of those answers.")


@dataclass
class KTOConfig(TrainConfig):
    """KTO on thumbs: unpaired (prompt, answer, good/bad), against the champion as reference."""

    learning_rate: float = _f(5e-5, "AdamW learning rate.")
    max_length: int = _f(0, "Longest prompt + response in tokens (0 = p95 of the prompts + response_tokens).")
    response_tokens: int = _f(256, "Response budget added to the prompts' p95 when max_length is 0.")
    beta: float = _f(0.1, "KTO temperature: strength of the implicit KL anchor.")
    desirable_weight: float = _f(1.0, "Weight λ_D of thumbs-up answers.")
    undesirable_weight: float = _f(1.0, "Weight λ_U of thumbs-down answers.")
    kl_budget: float = _f(12.0, "Most KL to the champion per response; above it the result is not published.")
    kl_samples: int = _f(8, "Answers sampled after training to measure the KL to the champion.")
    kl_max_new_tokens: int = _f(64, "Longest of those answers.")


# the service's sampling defaults (service.answering.ChatInput, Settings.max_tokens_default); a test
# keeps them equal
SERVICE_TEMPERATURE = 0.3
SERVICE_MAX_TOKENS = 256


@dataclass
class PPOConfig(TrainConfig):
    """PPO against the reward, KL-anchored to the champion; a group baseline (RLOO) by default.

    CPU sizing (SmolLM2-135M, 2 cores, ~550-token prompts): an iteration of 4 prompts × 4 answers
    samples 16 answers, scores them, and takes 2 gradient steps of 8."""

    learning_rate: float = _f(1e-4, "AdamW learning rate (policy LoRA, and the value head with gae).")
    advantage: Literal["group", "gae"] = _f(
        "group",
        "group: k answers per prompt, advantage = reward − mean of the prompt's other answers (RLOO), "
        "KL to the champion in the loss. gae: value head + GAE, KL in the per-token reward.",
    )
    group_size: int = _f(4, "Answers sampled per prompt (k) with the group baseline.")
    iterations: int = _f(6, "Rollout + update rounds.")
    rollout_batch: int = _f(4, "Prompts per iteration (each answered group_size times with `group`).")
    max_new_tokens: int = _f(
        128,
        f"Longest sampled answer (the service allows {SERVICE_MAX_TOKENS}; fewer keep a CPU refresh short).",
    )
    max_prompt_tokens: int = _f(
        0,
        "Prompt budget; longer prompts drop their lowest-ranked passages (0 = p95 of the prompts' tokens).",
    )
    temperature: float = _f(SERVICE_TEMPERATURE, "Sampling temperature of the rollouts (the service's).")
    top_p: float = _f(1.0, "Nucleus sampling of the rollouts (the service's).")
    ppo_epochs: int = _f(1, "Update passes over each rollout batch.")
    mini_batch: int = _f(8, "Rollouts per gradient step inside an update pass.")
    clip_range: float = _f(0.2, "PPO ratio clip.")
    clip_range_value: float = _f(0.2, "Value-function clip around the rollout values (gae).")
    vf_coef: float = _f(0.1, "Weight of the value loss (gae).")
    entropy_coef: float = _f(0.0, "Weight of the entropy bonus.")
    gamma: float = _f(1.0, "Discount (gae).")
    lam: float = _f(0.95, "GAE lambda (gae).")
    init_kl_coef: float = _f(0.05, "Initial β of the KL penalty.")
    adaptive_kl: bool = _f(True, "Adapt β towards `target_kl` (Ziegler et al.).")
    target_kl: float = _f(6.0, "Target total KL per response for the adaptive controller.")
    kl_horizon: int = _f(
        32,
        "Adaptive controller horizon in answers: β moves by up to 20%·(answers per iteration)/horizon per "
        "iteration (10% with 16 answers), so it moves within one refresh.",
    )
    kl_estimator: Literal["k1", "k3", "abs", "mse"] = _f("k3", "Per-token KL estimator (k3: ≥ 0, unbiased).")
    max_approx_kl: float = _f(0.5, "Stop an update epoch early when approx-KL exceeds this.")
    kl_budget: float = _f(12.0, "Refuse to publish a candidate whose mean KL to the champion exceeds this.")
    kl_samples: int = _f(8, "Fresh answers of the final policy that measure its KL to the champion and base.")
    reward_model: str = _f("", "Reward model folder ('' = the newest one under DATA_DIR/reward).")
    checkpoint_every: int = _f(1, "Save a resumable checkpoint every N iterations.")
    log_every: int = _f(1, "Write metrics every N iterations.")


@dataclass
class RefreshConfig:
    """The configured pipeline from the store: reward model update, then PPO (or DPO)."""

    algo: Literal["ppo", "dpo", "kto"] = _f(
        "ppo", "Policy update: PPO against the reward, DPO on pairs, or KTO on thumbs."
    )
    sft_first: bool = _f(
        True,
        "Run SFT on the employees' corrections, when there are any, before the policy update (reward "
        "model -> SFT -> PPO/DPO/KTO); the update starts from that model and stays anchored to the champion.",
    )
    sft_kl_share: float = _f(
        0.5,
        "Share of the policy update's KL budget SFT may spend (its `kl_limit`); the rest is left to "
        "PPO/DPO/KTO. 0 = SFT runs every epoch whatever its KL.",
    )
    correction_pairs: bool = _f(
        True,
        "The reward model (and DPO) also learn from each correction as a pair: the rewrite over the answer "
        "it replaced. The composite's weights and its agreement figures use the employees' choices only.",
    )
    full_retrain: bool = _f(False, "Train the reward model from the policy base instead of warm-starting.")
    replay_ratio: float = _f(1.0, "Old examples replayed per new one when the reward model warm-starts.")
    min_pairs: int = _f(20, "Fewest preference pairs + thumbs a refresh needs.")
    max_prompts: int = _f(100, "Most logged prompts used for PPO rollouts.")
    min_logged_prompts: int = _f(
        8,
        "Fewest held-out logged prompts for the gate's reward win rate alone (fewer: golden ones pooled in).",
    )
    seed: int = _f(0, "Random seed for the whole pipeline.")
    derive_budgets: bool = _f(
        True,
        "Set each phase's token budget from the logged prompts (p95 + the response budget) instead of "
        "its max_length.",
    )
    response_tokens: int = _f(256, "Response budget added to the prompts' p95 by derive_budgets.")
    composite: bool = _f(
        True,
        "PPO's reward = the reward model plus the verifiable checks (trainer/verifiable.py), weighed by a "
        "Bradley-Terry fit on the employees' pairs (trainer/composite.py); False = the reward model alone.",
    )
    composite_sample: int = _f(32, "Training pairs (and as many held-out ones) scored to fit those weights.")


def field_help(config_type: type) -> dict[str, str]:
    """Field name -> help text, for the CLI."""
    return {f.name: str(f.metadata.get("help", "")) for f in dataclasses.fields(config_type)}
