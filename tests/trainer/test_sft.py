"""trainer.sft on a tiny model: the loss falls on repeated demonstrations, and the published adapter is one
the answer service loads and that makes the demonstrated answers likelier."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from registry.loading import load_policy
from tests.trainer.synthetic import Demo, chat_prompt
from trainer.config import SFTConfig
from trainer.errors import TrainerError
from trainer.runs import Run
from trainer.sft import train_sft

DEMOS = [
    Demo(chat_prompt("Where is HR"), "The HR department is on the 4th floor, Suite 410 [1]."),
    Demo(chat_prompt("The VPN drops"), "Restart the client and call the IT helpdesk at extension 4357 [1]."),
    Demo(chat_prompt("What does parking cost"), "Parking permits cost $90 per month [1]."),
]


ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


def config(**changes: Any) -> SFTConfig:
    base = {"device": "cpu", "epochs": 10, "batch_size": 3, "learning_rate": 1e-2, "warmup_ratio": 0.0}
    return SFTConfig(**{**base, "lora_targets": ALL_LINEAR, **changes})


def answer_nll(model: Any, tokenizer: Any) -> float:
    """Mean negative log-likelihood per answer token (+ end-of-turn) of the demonstrations."""
    total, count = 0.0, 0
    for demo in DEMOS:
        prompt = tokenizer(demo.prompt, add_special_tokens=False)["input_ids"]
        answer = tokenizer(demo.completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            logprobs = model(input_ids=ids).logits[0, :-1].log_softmax(-1)
        picked = logprobs[len(prompt) - 1 :].gather(-1, ids[0, len(prompt) :, None])
        total, count = total - float(picked.sum()), count + len(answer)
    return total / count


def test_sft_loss_falls_and_the_service_serves_the_adapter(peaky_base: Path, tmp_path: Path) -> None:
    cfg = config()
    run = Run.open(tmp_path / "run", "sft", cfg.to_json())
    result = train_sft(base=str(peaky_base), parent_adapter=None, cfg=cfg, run=run, demonstrations=DEMOS)
    losses = [m["loss"] for m in run.metrics()]
    assert len(losses) == 10  # 10 epochs × one batch of 3
    assert losses[0] > 5.0  # ≈ ln 400 = 6.0: the answers are news to the random model
    assert losses[-1] < 0.5 * losses[0]
    assert result.adapter == run.output and (run.output / "adapter_config.json").exists()
    assert not (run.output / "policy").exists()  # saved as the plain default adapter the service reads
    assert run.manifest()["status"] == "succeeded"

    base_model, tokenizer = load_policy(str(peaky_base), None, device="cpu")
    tuned_model, _ = load_policy(str(peaky_base), run.output, device="cpu")
    before, after = answer_nll(base_model, tokenizer), answer_nll(tuned_model, tokenizer)
    assert after < 0.5 * before  # the service's model now prefers the demonstrated answers
    assert after == pytest.approx(losses[-1], rel=0.5)  # and it is the adapter that was trained


def test_sft_without_demonstrations_is_refused(peaky_base: Path, tmp_path: Path) -> None:
    cfg = config()
    with pytest.raises(TrainerError, match="demonstrations"):
        train_sft(
            base=str(peaky_base),
            parent_adapter=None,
            cfg=cfg,
            run=Run.open(tmp_path, "sft", {}),
            demonstrations=[],
        )


def test_sft_stops_at_its_kl_limit_and_keeps_the_epoch_before(peaky_base: Path, tmp_path: Path) -> None:
    """With a KL limit, SFT measures its KL to the champion (here the base) every `kl_check_every`
    epochs, stops at the first measurement past the limit, and bisects the saved epochs: the epoch it
    keeps was measured within the limit and the next one past it, with fewer measurements than epochs."""
    cfg = config(kl_limit=2.0, kl_samples=4, kl_max_new_tokens=12, kl_check_every=4)
    run = Run.open(tmp_path / "run", "sft", cfg.to_json())
    result = train_sft(base=str(peaky_base), parent_adapter=None, cfg=cfg, run=run, demonstrations=DEMOS)
    kls = {int(e): kl for e, kl in result.metrics["kl_by_epoch"].items()}
    kept = result.metrics["epochs_kept"]
    assert result.metrics["stopped_by"].startswith("kl")
    trained = len(run.metrics())  # one step per epoch here (3 demonstrations, batch 3)
    assert trained in (4, 8) and trained < 10  # stopped at the first measurement past the limit
    assert kls[trained] > 2.0 and all(kl <= 2.0 for e, kl in kls.items() if e <= kept)
    assert kept == 0 or kls[kept] <= 2.0
    assert kls[kept + 1] > 2.0  # the bisection ends between an epoch within and the next one past
    assert result.metrics["kl_measurements"] == len(kls) < trained
    assert not (run.root / "epochs").exists()  # the saved epochs are gone once the adapter is published

    # the published adapter is the kept epoch's: its answers are as close to the base as measured
    base_model, tokenizer = load_policy(str(peaky_base), None, device="cpu")
    kept_model, _ = load_policy(str(peaky_base), run.output, device="cpu")
    kept_nll, base_nll = answer_nll(kept_model, tokenizer), answer_nll(base_model, tokenizer)
    assert kept_nll < base_nll if kept else kept_nll == pytest.approx(base_nll, abs=1e-5)


def test_sft_within_its_kl_limit_measures_once(peaky_base: Path, tmp_path: Path) -> None:
    cfg = config(epochs=3, kl_limit=1e6, kl_samples=2, kl_max_new_tokens=6)
    run = Run.open(tmp_path / "run", "sft", cfg.to_json())
    result = train_sft(base=str(peaky_base), parent_adapter=None, cfg=cfg, run=run, demonstrations=DEMOS)
    assert result.metrics["kl_measurements"] == 1 and list(result.metrics["kl_by_epoch"]) == ["3"]
    assert result.metrics["epochs_kept"] == 3 and result.metrics["stopped_by"] is None


def test_sft_past_its_kl_limit_after_one_epoch_publishes_the_champion(
    peaky_base: Path, tmp_path: Path
) -> None:
    cfg = config(kl_limit=1e-6, kl_samples=4, kl_max_new_tokens=12)
    run = Run.open(tmp_path / "run", "sft", cfg.to_json())
    result = train_sft(base=str(peaky_base), parent_adapter=None, cfg=cfg, run=run, demonstrations=DEMOS)
    # past the limit at the first measurement (epoch 8), and at every epoch the bisection tries (4, 2, 1)
    assert result.metrics["epochs_kept"] == 0
    assert sorted(int(e) for e in result.metrics["kl_by_epoch"]) == [1, 2, 4, 8]

    base_model, tokenizer = load_policy(str(peaky_base), None, device="cpu")
    kept_model, _ = load_policy(str(peaky_base), run.output, device="cpu")
    # the fresh adapter's B matrices are zero: the published model is the champion (the base) again
    assert answer_nll(kept_model, tokenizer) == pytest.approx(answer_nll(base_model, tokenizer), abs=1e-5)
