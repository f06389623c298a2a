"""Greedy parity of llama.cpp (F16 conversion of the base folder) with transformers (float32), on the
shipped SmolLM2-135M, without and with a random non-trivial LoRA converted by service/generation/gguf_lora.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.generation.llama_server import LlamaServer, convert_hf_folder, server_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        server_binary() is None, reason="llama-server is not installed (make install builds it)"
    ),
]

PREFIX = 12  # greedy tokens compared
MIN_COMMON = 6  # tokens that must agree before any divergence
NEAR_TIE = 0.5  # a divergence is allowed only where transformers' two choices are this close (logits)
QUESTIONS = [
    "Where is the HR department in Boston?",
    "How much does a parking permit cost per month? Answer in one sentence.",
]


@pytest.fixture(scope="module")
def real_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from registry.loading import base_model_path

    return Path(base_model_path("", tmp_path_factory.mktemp("parity-models")))


def random_adapter(base: Path, target: Path) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.02)
    peft_model.save_pretrained(target)


def transformers_greedy(
    base: Path, adapter: Path | None, prompts: list[list[int]]
) -> tuple[Any, list[list[int]]]:
    import torch

    from registry.loading import load_policy

    model, tokenizer = load_policy(str(base), adapter, "cpu")
    out = []
    for ids in prompts:
        x = torch.tensor([ids])
        with torch.no_grad():
            made = model.generate(
                x,
                attention_mask=torch.ones_like(x),
                max_new_tokens=PREFIX,
                min_new_tokens=PREFIX,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
            )
        out.append(made[0, len(ids) :].tolist())
    return model, out


def assert_same_greedy(
    model: Any, prompts: list[list[int]], expected: list[list[int]], got: list[list[int]]
) -> None:
    """Token for token the same, or the same for MIN_COMMON tokens and then a divergence at a near tie
    of the float32 model (F16 rounding may flip it); after a divergence the texts legitimately differ."""
    import torch

    for ids, want, have in zip(prompts, expected, got, strict=True):
        common = next((i for i, (a, b) in enumerate(zip(want, have, strict=True)) if a != b), len(want))
        if common == len(want):
            continue
        assert common >= MIN_COMMON, (common, want, have)
        with torch.no_grad():
            logits = model(torch.tensor([ids + want[:common]])).logits[0, -1]
        gap = float(logits[want[common]] - logits[have[common]])
        assert 0 <= gap < NEAR_TIE, (common, gap, want, have)


def llamacpp_greedy(server: LlamaServer, prompts: list[list[int]], lora: int | None) -> list[list[int]]:
    import httpx

    out = []
    for ids in prompts:
        body: dict[str, Any] = {
            "prompt": ids,
            "n_predict": PREFIX,
            "temperature": 0,
            "top_k": 0,
            "min_p": 0,
            "ignore_eos": True,
            "return_tokens": True,
            "cache_prompt": False,
            "lora": [] if lora is None else [{"id": lora, "scale": 1.0}],
        }
        response = httpx.post(f"{server.url}/completion", json=body, timeout=120)
        response.raise_for_status()
        out.append([int(t) for t in response.json()["tokens"]])
    return out


def test_f16_greedy_tokens_match_transformers_with_and_without_a_lora(
    real_base: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from service.generation.gguf_lora import convert_adapter

    binary = server_binary()
    assert binary is not None
    tokenizer = AutoTokenizer.from_pretrained(real_base)
    prompts = [
        list(
            tokenizer.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=True, return_dict=False
            )
        )
        for q in QUESTIONS
    ]
    adapter = tmp_path / "adapter"
    random_adapter(real_base, adapter)
    f16 = convert_hf_folder(real_base, tmp_path / "gguf")
    lora = convert_adapter(adapter, f16, tmp_path / "adapter.lora.gguf")

    base_model, expected_base = transformers_greedy(real_base, None, prompts)
    tuned_model, expected_tuned = transformers_greedy(real_base, adapter, prompts)
    assert expected_tuned != expected_base  # the adapter is not trivial

    server = LlamaServer(binary, f16, [lora], slots=1, context_per_slot=1024, threads=2, log_dir=tmp_path)
    server.start()
    try:
        got_base = llamacpp_greedy(server, prompts, None)
        got_tuned = llamacpp_greedy(server, prompts, 0)
    finally:
        server.stop()
    assert_same_greedy(base_model, prompts, expected_base, got_base)
    assert_same_greedy(tuned_model, prompts, expected_tuned, got_tuned)
