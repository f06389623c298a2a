"""trainer.ppo on a tiny model: a verifiable toy reward rises within a few iterations under the group
baseline (the default) and under the value-head/GAE variant, while the KL to the champion stays bounded;
the adaptive KL coefficient follows the measured KL; the value head carries over; an over-budget result
is refused.

The toy reward is a token bonus: one point per " cite" in the answer. `peaky_base` already samples that
token now and then (~1 in 8 answers of 8 tokens), so every rollout batch carries some signal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from registry.loading import load_policy
from tests.trainer.synthetic import chat_prompt
from trainer.config import PPOConfig
from trainer.errors import TrainerError
from trainer.models import hidden_size
from trainer.ppo import PPOResult, PPOTrainer, Scorer, pick_prompts
from trainer.runs import Run

ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
PROMPTS = [
    chat_prompt(q) for q in ("Where is HR", "The VPN drops", "What does parking cost", "Is there a VPN")
]
CITES = Scorer(lambda prompts, responses: [float(r.count(" cite")) for r in responses])


def config(**changes: Any) -> PPOConfig:
    base = {
        "device": "cpu",
        "iterations": 6,
        "rollout_batch": 4,
        "group_size": 4,
        "mini_batch": 8,
        "temperature": 1.0,
        "max_new_tokens": 8,
        "ppo_epochs": 4,
        "learning_rate": 3e-3,
        "init_kl_coef": 0.2,
        "adaptive_kl": False,
        "kl_budget": 20.0,
        "lora_targets": ALL_LINEAR,
    }
    return PPOConfig(**{**base, **changes})


def trainer_for(base: Path, root: Path, cfg: PPOConfig, reward: Scorer = CITES) -> PPOTrainer:
    return PPOTrainer(
        base=str(base), parent_adapter=None, reward=reward, cfg=cfg, run=Run.open(root, "ppo", cfg.to_json())
    )


@pytest.fixture(scope="module")
def learned(peaky_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[PPOTrainer, PPOResult]:
    trainer = trainer_for(peaky_base, tmp_path_factory.mktemp("ppo") / "run", config())
    return trainer, trainer.train(PROMPTS)


@pytest.fixture(scope="module")
def learned_gae(peaky_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[PPOTrainer, PPOResult]:
    cfg = config(advantage="gae", rollout_batch=16, kl_estimator="k1")
    trainer = trainer_for(peaky_base, tmp_path_factory.mktemp("ppo-gae") / "run", cfg)
    return trainer, trainer.train(PROMPTS)


@pytest.mark.parametrize("variant", ["learned", "learned_gae"])
def test_ppo_raises_the_reward_while_the_kl_stays_bounded(
    variant: str, request: pytest.FixtureRequest
) -> None:
    trainer, result = request.getfixturevalue(variant)
    assert trainer.cfg.advantage == ("group" if variant == "learned" else "gae")
    logged = trainer.run.metrics()
    assert [m["step"] for m in logged] == [1, 2, 3, 4, 5, 6]
    rewards, kls = [m["reward"] for m in logged], [m["kl"] for m in logged]
    # ~0.1 " cite" per answer at the start; several per answer after 6 iterations
    assert sum(rewards[-2:]) / 2 >= sum(rewards[:2]) / 2 + 2.0, rewards
    assert kls[0] == pytest.approx(0.0, abs=1e-4)  # the first rollouts come from the champion itself
    assert kls[-1] > 0.5 and max(kls) < 20.0, kls  # it moved away from the champion, within bounds
    assert all(m["kl_coef"] == 0.2 for m in logged)  # fixed controller
    # the budget is checked on fresh samples of the final policy, not the last pre-update rollouts
    assert result.published and 0.5 < result.metrics["kl_to_champion"] < 20.0
    assert result.metrics["kl_to_champion"] != kls[-1]
    assert result.metrics["reward_first"] == rewards[0] and result.metrics["reward_last"] == rewards[-1]
    manifest = trainer.run.manifest()
    assert manifest["status"] == "succeeded" and manifest["publishable"] is True
    assert result.metrics["episodes"] == 6 * 16
    # a base champion: the KL to the base model is the KL to the champion (same estimator, same samples)
    assert result.metrics["kl_to_base"] == pytest.approx(result.metrics["kl_to_champion"], rel=1e-4)


def test_the_group_advantage_is_the_leave_one_out_reward(tiny_base: Path, tmp_path: Path) -> None:
    cfg = config(rollout_batch=2, group_size=2, max_new_tokens=3, lora_targets="q_proj")
    trainer = trainer_for(tiny_base, tmp_path / "run", cfg)
    encoded, _ = trainer.generate(trainer.rows_for(PROMPTS[:2]))
    first, second = encoded[0], encoded[1]
    assert len(encoded) == 4 and first.ids[: first.prompt_len] == second.ids[: second.prompt_len]
    rollouts, _ = trainer.make_rollouts(encoded, torch.tensor([1.0, 3.0, 5.0, 5.0]))
    # k = 2: A = r_i - r_other: (1 - 3, 3 - 1, 0, 0), on every response token of the row
    for row, expected in enumerate([-2.0, 2.0, 0.0, 0.0]):
        on = rollouts.mask[row].bool()
        assert rollouts.advantages[row][on].tolist() == pytest.approx([expected] * int(on.sum()))
        assert not rollouts.advantages[row][~on].any()


def test_the_value_head_carries_across_refreshes(
    learned_gae: tuple[PPOTrainer, PPOResult], peaky_base: Path, tmp_path: Path
) -> None:
    _, first = learned_gae
    cfg = config(advantage="gae", iterations=1, rollout_batch=2, max_new_tokens=2)
    again = PPOTrainer(
        base=str(peaky_base),
        parent_adapter=first.adapter,
        reward=CITES,
        cfg=cfg,
        run=Run.open(tmp_path / "run", "ppo", cfg.to_json()),
    )
    saved = torch.load(first.adapter / "value_head.pt", weights_only=True)
    assert again.value_head_from == str(first.adapter / "value_head.pt")
    assert torch.equal(again.unwrapped.value_head.state_dict()["weight"], saved["weight"])
    fresh = trainer_for(peaky_base, tmp_path / "fresh", cfg)  # no parent: a new head
    assert fresh.value_head_from is None
    assert not torch.equal(fresh.unwrapped.value_head.state_dict()["weight"], saved["weight"])


def test_rollouts_sample_as_the_service_answers() -> None:
    from core.settings import Settings
    from service.answering import ChatInput

    cfg = PPOConfig()
    assert cfg.temperature == ChatInput.temperature and cfg.top_p == ChatInput.top_p
    assert 48 < cfg.max_new_tokens <= Settings().max_tokens_default
    assert cfg.advantage == "group" and cfg.group_size == 4 and cfg.kl_estimator == "k3"
    assert cfg.iterations * cfg.rollout_batch * cfg.group_size > 32  # episodes per refresh


def test_ppo_publishes_the_policy_adapter_and_the_value_head(
    learned: tuple[PPOTrainer, PPOResult], peaky_base: Path
) -> None:
    trainer, result = learned
    assert result.adapter == trainer.run.output
    head = torch.nn.Linear(hidden_size(trainer.unwrapped.policy), 1)
    head.load_state_dict(torch.load(result.adapter / "value_head.pt", weights_only=True))
    assert torch.equal(head.weight, trainer.unwrapped.value_head.state_dict()["weight"])
    # the service loads the trained policy (not the frozen reference) from the published folder
    served, tokenizer = load_policy(str(peaky_base), result.adapter, device="cpu")
    ids = torch.tensor([tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"]])
    policy = trainer.unwrapped.policy.eval()
    with torch.no_grad():
        assert torch.allclose(served(input_ids=ids).logits, policy(input_ids=ids).logits, atol=1e-4)
        with policy.disable_adapter():
            base_logits = policy(input_ids=ids).logits
    assert not torch.allclose(served(input_ids=ids).logits, base_logits, atol=1e-2)


@pytest.fixture(scope="module")
def drifting(peaky_base: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[PPOTrainer, PPOResult]:
    """Adaptive β with a tiny KL target (and a budget it stays within)."""
    cfg = config(
        iterations=4,
        rollout_batch=2,
        mini_batch=4,
        max_new_tokens=6,
        adaptive_kl=True,
        target_kl=0.05,
        kl_horizon=16,
    )
    trainer = trainer_for(peaky_base, tmp_path_factory.mktemp("ppo-drift") / "run", cfg)
    return trainer, trainer.train(PROMPTS)


def test_adaptive_kl_coefficient_rises_while_the_kl_is_above_target(
    drifting: tuple[PPOTrainer, PPOResult],
) -> None:
    trainer, _ = drifting
    cfg, logged = trainer.cfg, trainer.run.metrics()
    betas, kls = [m["kl_coef"] for m in logged], [m["kl"] for m in logged]
    assert betas[0] == cfg.init_kl_coef
    for i in range(len(logged) - 1):
        # β ← β·(1 + clip(KL / target - 1, ±0.2)·n / horizon), n = 8 rollouts per iteration
        error = min(max(kls[i] / cfg.target_kl - 1.0, -0.2), 0.2)
        assert betas[i + 1] == pytest.approx(betas[i] * (1 + error * 8 / cfg.kl_horizon))
    assert betas[1] < betas[0]  # the first rollouts have KL 0 < target: β falls
    above = [i for i in range(len(logged) - 1) if kls[i] > 1.2 * cfg.target_kl]
    assert above and all(betas[i + 1] > betas[i] for i in above)


def test_ppo_rolls_back_an_update_past_the_kl_budget_and_never_publishes_it(
    peaky_base: Path, tmp_path: Path
) -> None:
    """A budget any update exceeds: the final fresh measure is past it, the last update is rolled back
    and measured again; a single update rolled back leaves nothing learned, and nothing is published."""
    cfg = config(iterations=1, rollout_batch=2, mini_batch=4, max_new_tokens=6, kl_budget=0.01)
    trainer = trainer_for(peaky_base, tmp_path / "run", cfg)
    result = trainer.train(PROMPTS)
    assert not result.published and result.metrics["updates_kept"] == 0
    assert "over the budget 0.01" in result.metrics["stopped_by"]
    manifest = trainer.run.manifest()
    assert manifest["status"] == "succeeded" and manifest["publishable"] is False
    assert "no update stayed within the KL budget 0.01" in manifest["metrics"]["refused"]
    assert result.metrics["kl_to_champion"] == pytest.approx(0.0, abs=1e-4)  # the champion's weights again
    assert (result.adapter / "adapter_model.safetensors").exists()  # kept for inspection


def test_roll_back_restores_the_weights_an_update_started_from(tiny_base: Path, tmp_path: Path) -> None:
    from trainer import checkpoint

    trainer = trainer_for(tiny_base, tmp_path / "run", config(lora_targets="q_proj"))
    before = checkpoint.trainable_state(trainer.unwrapped)
    with torch.no_grad():
        for param in trainer.params:
            param.add_(0.5)
    reason = trainer.roll_back(before, 3, 25.0)
    assert "25.00" in reason and "iteration 3" in reason
    for got, expected in zip(checkpoint.trainable_state(trainer.unwrapped), before, strict=True):
        assert all(torch.equal(got[k], expected[k]) for k in expected)


def test_ppo_without_prompts_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="prompts"):
        trainer_for(tiny_base, tmp_path / "run", config(lora_targets="q_proj")).train([])


def test_pick_prompts_fills_the_batch_from_few_prompts() -> None:
    picked = pick_prompts(["a", "b", "c"], 7, seed=1)
    assert len(picked) == 7 and sorted(picked[:3]) == sorted(picked[3:6]) == ["a", "b", "c"]
    assert pick_prompts(["a", "b", "c"], 7, seed=1) == picked  # seeded
    many = [str(i) for i in range(20)]
    assert len(set(pick_prompts(many, 8, seed=0))) == 8  # no repeats while there are enough


def test_rollout_logprobs_follow_the_sampling_temperature(tiny_base: Path, tmp_path: Path) -> None:
    """PPO's ratio needs the log-probs of the distribution the responses were sampled from."""
    from transformers import AutoModelForCausalLM

    cfg = config(temperature=0.5, rollout_batch=4, max_new_tokens=4, lora_targets="q_proj")
    trainer = trainer_for(tiny_base, tmp_path / "run", cfg)
    encoded, _ = trainer.generate(PROMPTS)
    for enc, prompt in zip(encoded, PROMPTS, strict=True):  # no budget derived yet: whole prompts
        assert enc.ids[: enc.prompt_len] == trainer.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    rollouts, _ = trainer.make_rollouts(encoded, torch.zeros(len(encoded)))
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()  # = the policy before any update
    for row, enc in enumerate(encoded):
        with torch.no_grad():
            logits = base(input_ids=torch.tensor([enc.ids])).logits[0]
        sampled = (logits[:-1] / 0.5).log_softmax(-1)  # position t - 1 scores token t
        expected = [float(sampled[t - 1, enc.ids[t]]) for t in range(enc.prompt_len, len(enc.ids))]
        got = rollouts.logprobs[row][rollouts.mask[row].bool()].tolist()
        assert got == pytest.approx(expected, abs=1e-4)
        assert rollouts.ref_logprobs[row][rollouts.mask[row].bool()].tolist() == pytest.approx(
            expected, abs=1e-4
        )


def test_rollouts_keep_every_sampled_token_up_to_the_end_of_turn(
    tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = trainer_for(tiny_base, tmp_path / "run", config(max_new_tokens=5, lora_targets="q_proj"))
    pad, eos = trainer.pad, int(trainer.tokenizer.eos_token_id)
    assert pad != eos  # the tiny tokenizer pads with <|endoftext|>, a token the model can also sample
    sampled = torch.tensor([[7, pad, 8, eos, pad], [9, 10, 11, 12, 13]])  # generate pads after an EOS

    def generate(input_ids: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        return torch.cat([input_ids, sampled], dim=1)

    monkeypatch.setattr(trainer.unwrapped.policy, "generate", generate)
    encoded, texts = trainer.generate(PROMPTS[:2])
    assert [e.ids[e.prompt_len :] for e in encoded] == [[7, pad, 8, eos], [9, 10, 11, 12, 13]]
    assert texts[1] == trainer.tokenizer.decode([9, 10, 11, 12, 13])


def test_ppo_shows_its_progress_stops_on_request_and_resumes(tiny_base: Path, tmp_path: Path) -> None:
    from trainer.progress import Stopped, read_progress, request_stop

    cfg = config(iterations=3, rollout_batch=2, group_size=2, max_new_tokens=2, lora_targets="q_proj")
    seen: list[int] = []

    def reward(prompts: Any, responses: Any) -> list[float]:
        seen.append(len(responses))
        if len(seen) == 2:  # the operator asks during iteration 2
            request_stop(tmp_path / "run")
        return [0.0] * len(responses)

    trainer = trainer_for(tiny_base, tmp_path / "run", cfg, Scorer(reward))
    with pytest.raises(Stopped, match="after iteration 2 of 3"):
        trainer.train(PROMPTS)
    state = read_progress(tmp_path / "run")
    assert state is not None and state["state"] == "stopped" and (state["done"], state["total"]) == (2, 3)
    assert state["phase"] == "PPO (group)" and state["unit"] == "iter" and "kl" in state["metrics"]
    (tmp_path / "run" / "STOP").unlink()
    resumed = trainer_for(tiny_base, tmp_path / "run", cfg, Scorer(reward))
    result = resumed.train(PROMPTS)  # from the checkpoint saved at the stop: iteration 3 only
    assert [m["step"] for m in resumed.run.metrics()] == [1, 2, 3] and len(seen) == 3
    assert result.published
