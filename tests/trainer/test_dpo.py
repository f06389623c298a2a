"""trainer.dpo on a tiny model, and the reference it is anchored to: always the champion (the base, or the
base with the champion's adapter), never the adapter being trained."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.trainer.synthetic import marker_pairs, random_adapter
from trainer.config import DPOConfig
from trainer.dpo import dpo_batch_loss, pair_items, reference_logprobs, train_dpo
from trainer.errors import TrainerError
from trainer.models import POLICY, REFERENCE, load_policy, load_tokenizer, reference_mode, set_reference
from trainer.runs import Run
from trainer.sequences import sequence_logprobs
from trainer.tokens import Encoded, encode

ALL_LINEAR = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
TRAIN, HELDOUT = marker_pairs(32, seed=0), marker_pairs(32, seed=1)


class Autocast:
    """What reference_logprobs uses of an accelerator: its autocast (accelerate keeps one process-wide
    state, so a test cannot make a second Accelerator with another precision)."""

    def __init__(self, dtype: torch.dtype | None) -> None:
        self.dtype = dtype

    def autocast(self) -> Any:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=self.dtype)


CPU = Autocast(None)


def config(**changes: Any) -> DPOConfig:
    base = {"device": "cpu", "epochs": 2, "batch_size": 8, "learning_rate": 1e-2, "warmup_ratio": 0.0}
    return DPOConfig(**{**base, "lora_targets": ALL_LINEAR, **changes})


def test_dpo_loss_falls_and_held_out_preferences_rise(peaky_base: Path, tmp_path: Path) -> None:
    cfg = config(kl_budget=1000.0)  # lr 1e-2 moves the tiny policy far (KL ~170): allowed here
    run = Run.open(tmp_path / "run", "dpo", cfg.to_json())
    result = train_dpo(
        base=str(peaky_base), parent_adapter=None, cfg=cfg, run=run, pairs=TRAIN, heldout=HELDOUT
    )
    logged = run.metrics()
    assert len(logged) == 8  # 2 epochs × 32 pairs / 8
    # the first step starts at the reference: margin 0, loss ln 2
    assert logged[0]["loss"] == pytest.approx(0.6931, abs=1e-3)
    assert logged[0]["margin"] == pytest.approx(0.0, abs=1e-5)
    assert logged[-1]["loss"] < 0.5
    heldout = result.metrics["heldout"]
    assert heldout["accuracy"] >= 0.9 and heldout["margin"] > 1.0  # before training: 0 and 0
    assert (run.output / "adapter_config.json").exists() and run.manifest()["status"] == "succeeded"
    # the KL to the champion is measured on fresh samples and kept with the result, under the budget
    assert result.published and run.manifest()["publishable"] is True
    assert 0.0 < result.metrics["kl_to_champion"] <= cfg.kl_budget


def test_a_dpo_result_over_the_kl_budget_is_not_published(peaky_base: Path, tmp_path: Path) -> None:
    cfg = config(kl_budget=1e-6, epochs=1)
    run = Run.open(tmp_path / "run", "dpo", cfg.to_json())
    result = train_dpo(
        base=str(peaky_base), parent_adapter=None, cfg=cfg, run=run, pairs=TRAIN, heldout=HELDOUT
    )
    assert not result.published and "exceeds the budget" in result.metrics["refused"]
    assert run.manifest()["publishable"] is False and run.manifest()["status"] == "succeeded"


def test_dpo_without_pairs_is_refused(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(TrainerError, match="pairs"):
        train_dpo(
            base=str(tiny_base),
            parent_adapter=None,
            cfg=config(),
            run=Run.open(tmp_path, "dpo", {}),
            pairs=[],
        )


def encoded_answers(tokenizer: Any) -> list[Encoded]:
    return [encode(tokenizer, p.prompt, p.chosen, 128, add_eos=True) for p in HELDOUT[:6]]


def perturb_policy(model: Any) -> None:
    """Stand-in for training: move every trainable (policy) parameter."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(torch.randn(param.shape, generator=generator) * 0.3)


def test_reference_of_a_base_champion_is_the_base(tiny_base: Path) -> None:
    from transformers import AutoModelForCausalLM

    tokenizer = load_tokenizer(str(tiny_base))
    pad = tokenizer.pad_token_id
    seqs = encoded_answers(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
    expected = sequence_logprobs(base, seqs, pad)

    model = load_policy(str(tiny_base), None, config(), with_reference=True).eval()
    with torch.no_grad():
        assert torch.allclose(sequence_logprobs(model, seqs, pad), expected, atol=1e-4)  # fresh LoRA: B = 0
        perturb_policy(model)
        assert not torch.allclose(sequence_logprobs(model, seqs, pad), expected, atol=1e-2)
    assert reference_logprobs(model, seqs, pad, batch_size=4, accelerator=CPU) == pytest.approx(
        expected.tolist(), abs=1e-4
    )


def test_reference_of_an_adapter_champion_is_the_champion(tiny_base: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    parent = Path(random_adapter(str(tiny_base), str(tmp_path / "champion")))
    tokenizer = load_tokenizer(str(tiny_base))
    pad = tokenizer.pad_token_id
    seqs = encoded_answers(tokenizer)
    base = AutoModelForCausalLM.from_pretrained(str(tiny_base))
    with torch.no_grad():
        plain = sequence_logprobs(base.eval(), seqs, pad)
        champion = PeftModel.from_pretrained(base, str(parent)).eval()
        expected = sequence_logprobs(champion, seqs, pad)
    assert not torch.allclose(plain, expected, atol=1e-2)  # the champion's adapter matters

    model = load_policy(str(tiny_base), parent, config(), with_reference=True).eval()
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(f".{POLICY}." in name and "lora_" in name for name in trainable)
    assert set(model.peft_config) == {POLICY, REFERENCE}
    with torch.no_grad():
        # the trainable adapter starts as a copy of the champion's
        assert torch.allclose(sequence_logprobs(model, seqs, pad), expected, atol=1e-4)
        perturb_policy(model)
        moved = sequence_logprobs(model, seqs, pad)
    assert not torch.allclose(moved, expected, atol=1e-2)
    assert reference_logprobs(model, seqs, pad, batch_size=4, accelerator=CPU) == pytest.approx(
        expected.tolist(), abs=1e-4
    )
    # leaving reference mode restores the trainable adapter, with gradients only on it
    assert model.active_adapter == POLICY
    assert [name for name, p in model.named_parameters() if p.requires_grad] == trainable
    with torch.no_grad():
        assert torch.allclose(sequence_logprobs(model, seqs, pad), moved)
        with reference_mode(model):
            assert torch.allclose(sequence_logprobs(model, seqs, pad), expected, atol=1e-4)


def test_policy_and_reference_agree_at_step_0_under_bf16_autocast(tiny_base: Path) -> None:
    """The reference log-probs are computed under the autocast training uses: at step 0 (the policy is
    the reference) every margin is 0 and the loss is ln 2, in bf16 as in fp32."""
    bf16 = Autocast(torch.bfloat16)
    tokenizer = load_tokenizer(str(tiny_base))
    model = load_policy(str(tiny_base), None, config(), with_reference=True).eval()
    items = pair_items(model, tokenizer, HELDOUT[:4], 128, 4, bf16)
    with torch.no_grad(), bf16.autocast():
        loss, stats = dpo_batch_loss(model, items, tokenizer.pad_token_id, beta=0.1, label_smoothing=0.0)
    assert stats["margin"] == pytest.approx(0.0, abs=1e-6)
    assert float(loss) == pytest.approx(0.693147, abs=1e-5)
    # the fp32 reference differs from the bf16 policy: the mismatch the shared autocast avoids
    fp32 = pair_items(model, tokenizer, HELDOUT[:4], 128, 4, CPU)
    assert max(abs(a.ref_chosen - b.ref_chosen) for a, b in zip(items, fp32, strict=True)) > 1e-4


def test_the_reference_stays_the_champion_when_training_starts_from_an_sft_adapter(
    tiny_base: Path, tmp_path: Path
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    champion_adapter = Path(random_adapter(str(tiny_base), str(tmp_path / "champion")))
    sft_adapter = Path(random_adapter(str(tiny_base), str(tmp_path / "sft"), seed=7))
    tokenizer = load_tokenizer(str(tiny_base))
    pad = tokenizer.pad_token_id
    seqs = encoded_answers(tokenizer)
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(str(tiny_base)).eval()
        plain = sequence_logprobs(base, seqs, pad)
        champion = sequence_logprobs(PeftModel.from_pretrained(base, str(champion_adapter)).eval(), seqs, pad)
    model = load_policy(str(tiny_base), sft_adapter, config(), with_reference=True).eval()
    with torch.no_grad():
        sft = sequence_logprobs(model, seqs, pad)
    assert not torch.allclose(sft, champion, atol=1e-2)
    set_reference(model, champion_adapter)
    assert reference_logprobs(model, seqs, pad, 4, CPU) == pytest.approx(champion.tolist(), abs=1e-4)
    with torch.no_grad():  # the policy is still the SFT adapter, and only it trains
        assert torch.allclose(sequence_logprobs(model, seqs, pad), sft, atol=1e-5)
    assert all(f".{POLICY}." in n for n, p in model.named_parameters() if p.requires_grad)
    set_reference(model, None)  # a base champion
    assert REFERENCE not in model.peft_config
    assert reference_logprobs(model, seqs, pad, 4, CPU) == pytest.approx(plain.tolist(), abs=1e-4)
