"""trainer.kto on a tiny model: thumbs alone (no pairs) teach the policy to favour the thumbed-up kind of
answer on held-out prompts, anchored to the champion; bad input is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.trainer.synthetic import marker_thumbs
from trainer.config import KTOConfig
from trainer.errors import TrainerError
from trainer.kto import encode_thumbs, train_kto
from trainer.models import load_tokenizer
from trainer.runs import Run

ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
TRAIN, HELDOUT = marker_thumbs(32, seed=0), marker_thumbs(16, seed=1)


def config(**changes: Any) -> KTOConfig:
    base = {"device": "cpu", "epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.0}
    return KTOConfig(
        **{**base, "lora_targets": ALL_LINEAR, "kl_samples": 4, "kl_max_new_tokens": 8, **changes}
    )


def test_kto_on_thumbs_separates_held_out_good_and_bad_answers(peaky_base: Path, tmp_path: Path) -> None:
    cfg = config(kl_budget=1000.0)
    run = Run.open(tmp_path / "run", "kto", cfg.to_json())
    result = train_kto(
        base=str(peaky_base), parent_adapter=None, cfg=cfg, run=run, thumbs=TRAIN, heldout=HELDOUT
    )
    logged = run.metrics()
    assert len(logged) == 8  # 2 epochs × 32 thumbs / 8
    # step 0 is the reference: log-ratios 0, z₀ 0, each term λ - λ·σ(0) = ½
    assert logged[0]["loss"] == pytest.approx(0.5, abs=1e-4)
    assert logged[0]["margin"] == pytest.approx(0.0, abs=1e-4)
    assert logged[-1]["loss"] < logged[0]["loss"]
    heldout = result.metrics["heldout"]
    assert heldout["margin"] > 0.3 and heldout["reward_up"] > 0 > heldout["reward_down"]  # 0 before
    assert result.published and run.manifest()["status"] == "succeeded"
    assert (run.output / "adapter_config.json").exists()
    assert result.metrics["thumbs"] == 32 and result.metrics["thumbs_up"] == 16
    # no max_length: the budget is the prompts' p95 plus the response budget
    assert result.metrics["max_length"] > cfg.response_tokens


def test_kto_mismatched_answers_come_from_the_next_thumb(tiny_base: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_base))
    encoded = encode_thumbs(tokenizer, TRAIN[:3], 256)
    for i, (answer, mismatched) in enumerate(encoded):
        assert answer.ids[: answer.prompt_len] == mismatched.ids[: mismatched.prompt_len]
        other = tokenizer.decode(mismatched.ids[mismatched.prompt_len :], skip_special_tokens=True)
        assert other.strip() == TRAIN[(i + 1) % 3].completion.strip()


def test_kto_needs_thumbs(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="at least 2 thumbs"):
        train_kto(
            base=str(tiny_base),
            parent_adapter=None,
            cfg=config(),
            run=Run.open(tmp_path, "kto", {}),
            thumbs=TRAIN[:1],
        )
