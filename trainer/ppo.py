"""PPO refresh of the policy against the reward, KL-anchored to the champion.

One iteration:
1. rollouts: `rollout_batch` real logged prompts (the service's rendered prompts, with the passages it
   retrieved; over the prompt budget they drop their lowest-ranked passages, never cut from the left)
   are answered by the current policy at the service's temperature, `group_size` times each with the
   group baseline;
2. scoring: the `Scorer` (the reward model, or whatever the refresh plugs in) scores each (prompt,
   response), normalised with its mean/std; the frozen reference (the champion) gives per-token
   log-probs for the KL;
3. advantages, by `advantage`:
   - `group` (default): RLOO, each answer's score minus the mean of its prompt's other answers, on every
     token of the answer; the KL to the champion (k3 estimator by default) is a term of the LOSS,
     β·mean_t k3_t, so no value head is needed;
   - `gae`: the KL is in the REWARD (score at the last token − β·KL per token), GAE(γ, λ) with the value
     head, whitened; the value head starts from the parent's `value_head.pt` when it has one;
4. update: `ppo_epochs` passes of clipped surrogate (+ clipped value loss with gae, + β·KL with group,
   − entropy bonus) over mini-batches, gradient clipping, an epoch stops early when approx-KL exceeds
   `max_approx_kl`;
5. β adapts toward `target_kl` (a horizon of a few dozen answers: it moves within one refresh); metrics
   go to metrics.jsonl; a checkpoint is written.
After the last iteration, fresh answers of the final policy measure its KL to the champion (the budget)
and to the base model (the cumulative drift over every refresh so far, which the gate bounds).

Policy and value head share one backbone forward pass (the value head reads the last hidden state),
and the reference is the same backbone with the champion's frozen adapter (or none): three roles, one
copy of the weights, which is what makes PPO fit on a CPU. The math lives in trainer/losses.py,
trainer/advantages.py and trainer/kl_control.py.

(One concept at ~530 lines: the five steps of an iteration share the policy, reference, scorer and
KL controller they hold; the math they call is already in its own modules.)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer import checkpoint
from trainer.advantages import gae, kl_penalized_rewards, kl_penalty, rloo_advantages, token_advantages
from trainer.config import PPOConfig
from trainer.errors import TrainerError
from trainer.kl_control import AdaptiveKLController, FixedKLController
from trainer.loop import accelerator_for, adamw
from trainer.losses import (
    entropy_from_logits,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
    token_logprobs,
)
from trainer.models import (
    ValueHead,
    hidden_size,
    load_policy,
    load_tokenizer,
    pick_device,
    reference_mode,
    save_policy_adapter,
    set_reference,
)
from trainer.progress import Progress, Stopped
from trainer.runs import Run
from trainer.sequences import sample_responses
from trainer.shared_prompt import Grouped, grouped_forward
from trainer.tokens import Encoded, count, quantile

log = logging.getLogger(__name__)


VALUE_HEAD = "value_head.pt"
SAME_AS_PARENT = Path("<parent>")  # the reference is the adapter training starts from
NO_BUDGET = 1 << 30  # before `train` derives the prompt budget, prompts are sampled whole


@dataclass(frozen=True)
class Scorer:
    """The reward: a function of (prompts, responses) -> scores, and the mean/std that normalise it.
    PPO knows nothing else about the reward: any scorer (the reward model, a composite of it and
    verifiable checks) plugs in here."""

    score: Callable[[Sequence[str], Sequence[str]], list[float]]
    mean: float = 0.0
    std: float = 1.0


def reward_model_scorer(folder: Path, device: str = "auto", max_length: int = 512) -> Scorer:
    """A Scorer backed by a published reward model (trainer/reward.py)."""
    from trainer.reward import load_for_scoring, score

    model, tokenizer, stats = load_for_scoring(folder, device)

    def run(prompts: Sequence[str], responses: Sequence[str]) -> list[float]:
        return score(model, tokenizer, prompts, responses, max_length=max_length)

    return Scorer(run, stats["mean"], stats["std"])


class PolicyWithValue(torch.nn.Module):
    """The LoRA policy and its value head: one module, so accelerate prepares (and DDP wraps) both."""

    def __init__(self, policy: Any, value_head: torch.nn.Module) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head

    def forward(self, batch: Grouped) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, values) over the answers: (answers, width, vocab), (answers, width); column j is what
        predicts answer token j (trainer.shared_prompt: each prompt runs once for its group)."""
        logits, hidden = grouped_forward(self.policy, batch, hidden=True)
        assert hidden is not None
        values = self.value_head(hidden.to(next(self.value_head.parameters()).dtype)).squeeze(-1)
        return logits, values


@dataclass
class Rollouts:
    """A batch of sampled responses with everything the update needs, aligned on (answers, width):
    column j is answer token j (trainer.shared_prompt)."""

    batch: Grouped  # the answers grouped by their prompt
    mask: torch.Tensor  # (answers, width) 1 on response tokens
    logprobs: torch.Tensor  # under the policy that sampled them
    ref_logprobs: torch.Tensor  # under the reference
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def mini_batches(order: Sequence[int], sizes: Sequence[int], rows: int) -> list[list[int]]:
    """Groups in `order`, cut into mini-batches of whole groups holding at least `rows` answers each
    (the last may hold fewer)."""
    out: list[list[int]] = [[]]
    held = 0
    for g in order:
        if held >= rows:
            out.append([])
            held = 0
        out[-1].append(g)
        held += sizes[g]
    return [m for m in out if m]


def pick_prompts(prompts: Sequence[str], n: int, seed: int) -> list[str]:
    """`n` prompts in a seeded random order; with fewer than `n` prompts, each is used again (in a new
    order) until the batch is full, so the rollout batch always has `n` samples."""
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < n:
        order += torch.randperm(len(prompts), generator=generator).tolist()
    return [prompts[i] for i in order[:n]]


@dataclass(frozen=True)
class PPOResult:
    adapter: Path
    metrics: dict[str, Any]
    published: bool  # False when the KL budget was exceeded


class PPOTrainer:
    def __init__(
        self,
        *,
        base: str,
        parent_adapter: Path | None,
        reward: Scorer,
        cfg: PPOConfig,
        run: Run,
        reference_adapter: Path | None = SAME_AS_PARENT,
        value_head: Path | None = None,
    ) -> None:
        """`reference_adapter`: the champion's adapter (None: the bare base) when training starts from
        another one (an SFT result); `value_head`: the value head to continue from (default: the
        parent's `value_head.pt`, when there is one)."""
        if cfg.advantage == "group" and cfg.group_size < 2:
            raise TrainerError(f"the group baseline needs group_size >= 2, got {cfg.group_size}")
        self.cfg, self.run = cfg, run
        self.tokenizer = load_tokenizer(base)
        self.tokenizer.padding_side = "left"
        self.device = pick_device(cfg.device)
        self.accelerator = accelerator_for(self.device)
        policy = load_policy(base, parent_adapter, cfg, with_reference=True)
        if reference_adapter != SAME_AS_PARENT and reference_adapter != parent_adapter:
            set_reference(policy, reference_adapter)
        head = ValueHead.create(hidden_size(policy), cfg.seed)
        self.value_head_from = self._carry_value_head(head, value_head, parent_adapter)
        self.model = PolicyWithValue(policy, head)
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = adamw(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(self.model, optimizer)
        self.params = params
        self.reward = reward
        self.kl_ctl: AdaptiveKLController | FixedKLController = (
            AdaptiveKLController(cfg.init_kl_coef, cfg.target_kl, cfg.kl_horizon)
            if cfg.adaptive_kl
            else FixedKLController(cfg.init_kl_coef)
        )
        self.pad = int(self.tokenizer.pad_token_id)
        self.prompt_budget = cfg.max_prompt_tokens

    @staticmethod
    def _carry_value_head(head: torch.nn.Module, source: Path | None, parent: Path | None) -> str | None:
        """Load the value head a previous refresh saved (a head of another shape starts fresh)."""
        path = source or (parent / VALUE_HEAD if parent is not None else None)
        if path is None or not path.is_file():
            return None
        try:
            head.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        except (RuntimeError, OSError, ValueError) as exc:
            log.warning("value head %s not loaded (%s): starting a fresh one", path, exc)
            return None
        return str(path)

    @property
    def unwrapped(self) -> PolicyWithValue:
        model: PolicyWithValue = self.accelerator.unwrap_model(self.model)
        return model

    # -- rollouts -------------------------------------------------------------------------------
    def generate(self, prompts: Sequence[str]) -> tuple[list[Encoded], list[str]]:
        """Sample one response per prompt with the policy; (prompt + response token ids, response texts).
        Prompts over the prompt budget drop their lowest-ranked passages first."""
        cfg = self.cfg
        return sample_responses(
            self.unwrapped.policy,
            self.tokenizer,
            prompts,
            max_prompt_tokens=self.prompt_budget or NO_BUDGET,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
        )

    @torch.no_grad()
    def scores(self, prompts: Sequence[str], responses: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(raw, normalised) reward-model scores, both (batch,)."""
        raw = torch.tensor(self.reward.score(prompts, responses), dtype=torch.float32)
        normalised = (raw - self.reward.mean) / max(self.reward.std, 1e-6)
        return raw, normalised

    def forward(self, model: Any, batch: Grouped) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probs, values, logits) of the answers, at the sampling temperature (the distribution the
        rollouts were drawn from, which the PPO ratio is about)."""
        logits, values = model(batch)
        logits = logits / self.cfg.temperature  # (answers, width, vocab)
        return token_logprobs(logits, batch.responses), values, logits

    @torch.no_grad()
    def logprobs(
        self, encoded: list[Encoded]
    ) -> tuple[Grouped, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(grouped answers, mask, log-probs, values, reference log-probs) of sampled answers; the
        per-token tensors are (answers, width), in float32."""
        batch = Grouped.of(encoded, self.pad).to(self.accelerator.device)
        self.model.eval()
        with self.accelerator.autocast():
            logprobs, values, _ = self.forward(self.model, batch)
            with reference_mode(self.unwrapped.policy):
                ref_logits, _ = grouped_forward(self.unwrapped.policy, batch)
        ref_logprobs = token_logprobs(ref_logits / self.cfg.temperature, batch.responses)
        return batch, batch.mask, logprobs.float(), values.float(), ref_logprobs.float()

    @torch.no_grad()
    def make_rollouts(
        self, encoded: list[Encoded], normalised: torch.Tensor
    ) -> tuple[Rollouts, torch.Tensor]:
        """The rollouts and their per-token KL to the reference (answers, width). With the group
        baseline, `encoded` holds each prompt's `group_size` answers consecutively."""
        cfg = self.cfg
        batch, mask, logprobs, values, ref_logprobs = self.logprobs(encoded)
        scores = normalised.to(mask.device)
        if cfg.advantage == "group":
            kl = torch.where(
                mask.bool(), kl_penalty(logprobs, ref_logprobs, cfg.kl_estimator), torch.zeros_like(logprobs)
            )
            advantages = token_advantages(rloo_advantages(scores, cfg.group_size), mask)
            returns = torch.zeros_like(values)
        else:
            rewards, kl = kl_penalized_rewards(
                scores, logprobs, ref_logprobs, mask, self.kl_ctl.value, cfg.kl_estimator
            )
            advantages, returns = gae(rewards, values, mask, cfg.gamma, cfg.lam)
            advantages = masked_whiten(advantages, mask) * mask
        rollouts = Rollouts(batch, mask, logprobs, ref_logprobs, values, advantages, returns)
        return rollouts, kl

    # -- update ---------------------------------------------------------------------------------
    def update(self, r: Rollouts, iteration: int) -> dict[str, float]:
        cfg = self.cfg
        group = cfg.advantage == "group"
        self.model.train()
        n = len(r.batch.sizes)  # mini-batches take whole groups: one prompt pass serves its answers
        generator = torch.Generator().manual_seed(cfg.seed * 7919 + iteration)
        names = ("pg_loss", "vf_loss", "kl_loss", "entropy", "clipfrac", "vf_clipfrac", "approx_kl")
        stats: dict[str, list[float]] = {k: [] for k in names}
        early_stopped = 0
        for _epoch in range(cfg.ppo_epochs):
            order = torch.randperm(n, generator=generator).tolist()
            epoch_kl: list[float] = []
            for groups in mini_batches(order, r.batch.sizes, cfg.mini_batch):
                batch, rows = r.batch.select(groups)
                mask = batch.mask
                with self.accelerator.autocast():
                    logprobs, values, logits = self.forward(self.model, batch)
                logprobs, values = logprobs.float(), values.float()
                pg_loss, clipfrac, approx_kl = ppo_policy_loss(
                    logprobs, r.logprobs[rows], r.advantages[rows], mask, cfg.clip_range
                )
                if cfg.entropy_coef:
                    entropy = masked_mean(entropy_from_logits(logits), mask)
                else:  # logged only: no graph through a (batch, seq, vocab) softmax
                    with torch.no_grad():
                        entropy = masked_mean(entropy_from_logits(logits.detach()), mask)
                loss = pg_loss - cfg.entropy_coef * entropy
                if group:  # the KL to the champion is in the loss: β·mean_t k3_t
                    kl_loss = masked_mean(kl_penalty(logprobs, r.ref_logprobs[rows], cfg.kl_estimator), mask)
                    vf_loss, vf_clipfrac = torch.zeros(()), torch.zeros(())
                    loss = loss + self.kl_ctl.value * kl_loss
                else:
                    vf_loss, vf_clipfrac = ppo_value_loss(
                        values, r.values[rows], r.returns[rows], mask, cfg.clip_range_value
                    )
                    kl_loss = torch.zeros(())
                    loss = loss + cfg.vf_coef * vf_loss
                self.accelerator.backward(loss)
                self.accelerator.clip_grad_norm_(self.params, cfg.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                for key, value in (
                    ("pg_loss", pg_loss),
                    ("vf_loss", vf_loss),
                    ("kl_loss", kl_loss),
                    ("entropy", entropy),
                    ("clipfrac", clipfrac),
                    ("vf_clipfrac", vf_clipfrac),
                    ("approx_kl", approx_kl),
                ):
                    stats[key].append(float(value.detach()))
                epoch_kl.append(float(approx_kl.detach()))
            if sum(epoch_kl) / len(epoch_kl) > cfg.max_approx_kl:
                early_stopped = 1
                break
        out = {k: sum(v) / len(v) for k, v in stats.items() if v}
        out["early_stopped"] = early_stopped
        return out

    # -- the run --------------------------------------------------------------------------------
    def state(self, iteration: int, history: dict[str, Any]) -> dict[str, Any]:
        return {
            "iteration": iteration,
            "trainable": checkpoint.trainable_state(self.unwrapped),
            "optimizer": self.optimizer.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            "rng": checkpoint.rng_state(),
            "history": history,
        }

    def rows_for(self, chosen: Sequence[str]) -> list[str]:
        """The prompts to sample: each `group_size` times in a row with the group baseline."""
        k = self.cfg.group_size if self.cfg.advantage == "group" else 1
        return [p for p in chosen for _ in range(k)]

    def train(self, prompts: Sequence[str]) -> PPOResult:
        cfg = self.cfg
        if not prompts:
            raise TrainerError("PPO needs prompts (logged questions with their passages); none were given")
        if not self.prompt_budget:  # p95 of the prompts' token counts: most prompts keep every passage
            distinct = list(dict.fromkeys(prompts))
            self.prompt_budget = math.ceil(quantile([count(self.tokenizer, p) for p in distinct], 0.95))
        start = 0
        history: dict[str, Any] = {"first_lengths": [], "kl": []}
        saved = checkpoint.load(self.run.checkpoint_dir)
        if saved is not None:
            checkpoint.load_trainable_state(saved["trainable"], self.unwrapped)
            self.optimizer.load_state_dict(saved["optimizer"])
            self.kl_ctl.load_state_dict(saved["kl_ctl"])
            checkpoint.set_rng_state(saved["rng"])
            start, history = int(saved["iteration"]), saved["history"]
        if self.accelerator.is_main_process:
            self.run.truncate_metrics(start)  # iterations past the checkpoint (or all, without one) run again
            self.run.update(prompt_budget=self.prompt_budget, value_head_from=self.value_head_from)
        bar = Progress(
            f"PPO ({cfg.advantage})",
            cfg.iterations,
            folder=self.run.root,
            initial=start,
            enabled=self.accelerator.is_main_process,
            unit="iter",
        )
        last: dict[str, float] = {}
        before_update: list[dict[str, torch.Tensor]] | None = None  # the weights the last update started from
        for iteration in range(start, cfg.iterations):
            chosen = pick_prompts(prompts, cfg.rollout_batch, cfg.seed * 104729 + iteration)
            # with several processes each samples its own share of the prompts (a group stays together)
            chosen = chosen[self.accelerator.process_index :: self.accelerator.num_processes] or chosen[:1]
            rows = self.rows_for(chosen)
            t0 = time.perf_counter()
            encoded, texts = self.generate(rows)
            t1 = time.perf_counter()
            raw, normalised = self.scores(rows, texts)
            rollouts, kl = self.make_rollouts(encoded, normalised)
            t2 = time.perf_counter()
            before_update = checkpoint.trainable_state(self.unwrapped)
            update = self.update(rollouts, iteration)
            t3 = time.perf_counter()
            lengths = rollouts.mask.sum(dim=1).float()
            kl_per_response = float((kl * rollouts.mask).sum(dim=1).mean())
            if iteration == 0:
                history["first_lengths"] = lengths.tolist()
            history["kl"].append(kl_per_response)
            last = {
                "reward": float(raw.mean()),
                "reward_normalised": float(normalised.mean()),
                "kl": kl_per_response,
                "kl_coef": self.kl_ctl.value,
                "response_length": float(lengths.mean()),
                "episodes": float(len(rows) * (iteration + 1) * self.accelerator.num_processes),
                **update,
                "seconds_rollout": t1 - t0,
                "seconds_scoring": t2 - t1,
                "seconds_update": t3 - t2,
            }
            if cfg.advantage == "group":  # how much the answers to one prompt differ: the group's signal
                last["reward_std_in_group"] = float(raw.reshape(-1, cfg.group_size).std(dim=1).mean())
            self.kl_ctl.update(kl_per_response, len(rows))
            stop = bar.stop_requested() is not None
            if self.accelerator.num_processes > 1:  # every process must take the same decision
                stop = bool(self.accelerator.reduce(torch.tensor([float(stop)]), reduction="sum")[0] > 0)
            if self.accelerator.is_main_process:
                self.run.log(iteration + 1, last)
                if (iteration + 1) % cfg.checkpoint_every == 0 or iteration + 1 == cfg.iterations or stop:
                    checkpoint.save(self.run.checkpoint_dir, self.state(iteration + 1, history))
            bar.update(1, reward=last["reward"], kl=kl_per_response)
            if stop:
                bar.close("stopped")
                raise Stopped(
                    f"PPO: stopped on request after iteration {iteration + 1} of {cfg.iterations}; the "
                    f"checkpoint in {self.run.checkpoint_dir} resumes it"
                )
        bar.close()
        self.accelerator.wait_for_everyone()
        if not self.accelerator.is_main_process:  # the main process publishes
            return PPOResult(self.run.output, {}, False)
        history["final_kl"], history["kl_to_base"] = self.measure_kl(prompts)
        # the budget is judged on fresh answers of the final policy (the per-iteration figure, on the
        # rollouts, is noisier: 23.2 one iteration before a fresh measure of 10.97 in one run)
        if history["final_kl"] > cfg.kl_budget and before_update is not None:
            history["stopped_by"] = self.roll_back(before_update, cfg.iterations, history["final_kl"])
            history["updates_kept"] = cfg.iterations - 1
            history["final_kl"], history["kl_to_base"] = self.measure_kl(prompts)
        return self.finish(history, last)

    def roll_back(self, weights: list[dict[str, torch.Tensor]], iteration: int, kl: float) -> str:
        """Restore the weights the last update started from: its result is over the KL budget."""
        checkpoint.load_trainable_state(weights, self.unwrapped)
        reason = (
            f"kl: {kl:.2f} to the champion after iteration {iteration}, over the budget "
            f"{self.cfg.kl_budget:.2f}; the weights before that iteration's update are kept"
        )
        log.warning("PPO: %s", reason)
        return reason

    @torch.no_grad()
    def measure_kl(self, prompts: Sequence[str]) -> tuple[float, float]:
        """(KL to the champion, KL to the base model) per response of the policy as published: fresh
        samples of the final policy (the per-iteration figure was measured before that iteration's
        update). The KL to the base is the cumulative drift of every refresh so far."""
        cfg = self.cfg
        chosen = pick_prompts(prompts, max(cfg.kl_samples, 1), cfg.seed * 104729 + cfg.iterations)
        encoded, _ = self.generate(chosen)
        batch, mask, logprobs, _, ref_logprobs = self.logprobs(encoded)
        policy = self.unwrapped.policy
        with self.accelerator.autocast(), policy.disable_adapter():
            base_logits, _ = grouped_forward(policy, batch)
        base_logprobs = token_logprobs(base_logits / cfg.temperature, batch.responses).float()

        def per_response(reference: torch.Tensor) -> float:
            kl = torch.where(mask.bool(), kl_penalty(logprobs, reference, cfg.kl_estimator), 0.0)
            return float(kl.sum(dim=1).mean())

        return per_response(ref_logprobs), per_response(base_logprobs)

    def finish(self, history: dict[str, Any], last: dict[str, float]) -> PPOResult:
        cfg = self.cfg
        metrics = self.run.metrics()
        first_lengths = history.get("first_lengths") or [0.0]
        first_len = sum(first_lengths) / len(first_lengths)
        final_kl = history.get("final_kl", history["kl"][-1] if history["kl"] else 0.0)
        summary = {
            "iterations": cfg.iterations,
            "advantage": cfg.advantage,
            "episodes": int(last.get("episodes", 0)),
            "final": last,
            "reward_first": metrics[0]["reward"] if metrics else math.nan,
            "reward_last": metrics[-1]["reward"] if metrics else math.nan,
            "kl_to_champion": final_kl,
            "kl_to_base": history.get("kl_to_base", math.nan),
            "kl_estimator": cfg.kl_estimator,
            "kl_budget": cfg.kl_budget,
            "stopped_by": history.get("stopped_by"),
            "kl_coef_first": metrics[0]["kl_coef"] if metrics else math.nan,
            "kl_coef_last": self.kl_ctl.value,
            "prompt_budget": self.prompt_budget,
            "value_head_from": self.value_head_from,
            "length_first": first_len,
            "length_last": metrics[-1]["response_length"] if metrics else math.nan,
            "length_drift": (metrics[-1]["response_length"] / first_len - 1.0)
            if metrics and first_len
            else math.nan,
            "seconds": {
                k: sum(m.get(f"seconds_{k}", 0.0) for m in metrics) for k in ("rollout", "scoring", "update")
            },
        }
        kept = history.get("updates_kept", cfg.iterations)
        summary["updates_kept"] = kept
        published = final_kl <= cfg.kl_budget and kept > 0
        with self.run.publishing() as staging:
            save_policy_adapter(self.unwrapped.policy, staging)
            torch.save(self.unwrapped.value_head.state_dict(), staging / VALUE_HEAD)
        if kept == 0:
            summary["refused"] = f"no update stayed within the KL budget {cfg.kl_budget:.2f}: nothing learned"
            log.warning("PPO result not publishable: %s", summary["refused"])
        elif not published:
            summary["refused"] = f"KL to the champion {final_kl:.2f} exceeds the budget {cfg.kl_budget:.2f}"
            log.warning("PPO result not publishable: %s", summary["refused"])
        self.run.succeed(metrics=summary, publishable=published)
        return PPOResult(self.run.output, summary, published)
