from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.tiny import save_tiny_chat_model, tiny_tokenizer


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny models gain nothing from threads, and on a busy machine the waiting threads cost up to 10×."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama chat model folder (random weights, small BPE tokenizer): the policy base in tests."""
    return save_tiny_chat_model(tmp_path_factory.mktemp("tiny-base"))


@pytest.fixture(scope="session")
def peaky_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Like `tiny_base`, but with logits far from uniform: larger initial weights (initializer_range 0.1
    instead of 0.02) and the final norm's gain tripled. It has favourite tokens (" cite" is 4-5% of what
    it samples, where `tiny_base` gives every token ~0.25%), so rewarding one of them gives PPO a signal
    in every rollout batch and a few iterations visibly change what it samples."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("peaky-base")
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        initializer_range=0.1,
    )
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        model.model.norm.weight.mul_(3.0)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
