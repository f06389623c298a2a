"""Synthetic, separable feedback for the trainer tests: the preferred answer says "VPN" where the rejected
one says "HR", inside random filler that differs from example to example (so a model has to find the
marker, and held-out examples with new filler measure whether it did)."""

from __future__ import annotations

import random
from dataclasses import dataclass

WORDS = [
    *("the", "answer", "passages", "floor", "month", "minutes", "parking", "permits", "Boston"),
    *("department", "cover", "client", "restart", "extension", "system", "user", "context", "question"),
    *("knowledge", "base"),
]
GOOD, BAD = "VPN", "HR"


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str
    weight: float = 1.0


@dataclass(frozen=True)
class Thumb:
    prompt: str
    completion: str
    label: bool
    weight: float = 1.0


@dataclass(frozen=True)
class Demo:
    prompt: str
    completion: str


def chat_prompt(question: str) -> str:
    """A prompt as the service renders it (the tiny tokenizer's chat markup)."""
    return f"<|im_start|>user\n{question}?<|im_end|>\n<|im_start|>assistant\n"


def _words(rng: random.Random, low: int, high: int) -> str:
    return " ".join(rng.choices(WORDS, k=rng.randint(low, high)))


def marker_pairs(n: int, seed: int) -> list[Pair]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        prompt, head, tail = chat_prompt(_words(rng, 3, 5)), _words(rng, 2, 5), _words(rng, 1, 4)
        out.append(Pair(prompt, f"{head} {GOOD} {tail}.", f"{head} {BAD} {tail}."))
    return out


def marker_thumbs(n: int, seed: int) -> list[Thumb]:
    """Half thumbs-up (the answer has the good marker), half thumbs-down (the bad one), interleaved."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        marker = GOOD if i % 2 == 0 else BAD
        prompt, head, tail = chat_prompt(_words(rng, 3, 5)), _words(rng, 2, 5), _words(rng, 1, 4)
        out.append(Thumb(prompt, f"{head} {marker} {tail}.", marker == GOOD))
    return out


def random_adapter(base: str, folder: str, seed: int = 5) -> str:
    """A LoRA adapter on `base` whose B matrices are random (a trained-looking champion adapter)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)
    model.save_pretrained(folder)
    return folder
