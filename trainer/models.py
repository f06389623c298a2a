"""Load the models a training run needs: the policy with LoRA, the reward model, the value head.

- Policy: the champion's base model, plus its LoRA adapter when the champion has one. PPO and DPO keep
  two adapters on one backbone: `reference` (the champion's adapter, frozen) and `policy` (trainable,
  initialised from it); with a base champion the reference is the backbone with adapters disabled. So
  the frozen reference costs no second copy of the weights, and the result is again "base + one
  adapter", the shape of every served version.
- Reward model: `AutoModelForSequenceClassification` with one label, initialised from the policy's
  base (or a previous reward model), LoRA on attention plus the trainable score head.
- Value head: one linear layer on the policy's last hidden state (shared forward pass).
"""

from __future__ import annotations

import json
import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainer.config import TrainConfig
from trainer.errors import TrainerError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

REFERENCE = "reference"
POLICY = "policy"
REWARD_META = "kbloop_reward.json"


@dataclass(frozen=True)
class Device:
    device: str  # "cpu" | "cuda"
    mixed_precision: str  # "no" | "bf16" | "fp16"

    @property
    def dtype(self) -> torch.dtype:
        import torch

        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.mixed_precision, torch.float32)


def pick_device(choice: str = "auto") -> Device:
    """CUDA with bf16 (fp16 where bf16 is missing) when present or asked for; CPU float32 otherwise."""
    import torch

    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise TrainerError("device=cuda but no CUDA device is available")
        return Device("cuda", "bf16" if torch.cuda.is_bf16_supported() else "fp16")
    return Device("cpu", "no")


def load_tokenizer(base: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except (OSError, ValueError) as exc:
        raise TrainerError(f"cannot load the tokenizer of {base!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def lora_config(cfg: TrainConfig, task_type: str, modules_to_save: list[str] | None = None) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=[m.strip() for m in cfg.lora_targets.split(",") if m.strip()],
        task_type=task_type,
        modules_to_save=modules_to_save,
    )


def load_policy(base: str, adapter: Path | None, cfg: TrainConfig, *, with_reference: bool) -> Any:
    """A PeftModel on the CPU with a trainable `policy` adapter (from `adapter` when given, else fresh).

    With `with_reference`, a frozen `reference` adapter (a copy of `adapter`) sits beside it; callers
    switch with `reference_mode(model)`. The caller moves the model to its device (accelerate).
    """
    import torch
    from peft import PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(cfg.seed)
    try:
        backbone = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise TrainerError(f"cannot load the policy base {base!r}: {exc}") from exc
    if adapter is None:
        model = get_peft_model(backbone, lora_config(cfg, "CAUSAL_LM"), adapter_name=POLICY)
    else:
        try:
            model = PeftModel.from_pretrained(backbone, str(adapter), adapter_name=POLICY, is_trainable=True)
            if with_reference:
                model.load_adapter(str(adapter), adapter_name=REFERENCE, is_trainable=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise TrainerError(f"cannot load the champion's adapter {adapter}: {exc}") from exc
        model.set_adapter(POLICY)
    for name, param in model.named_parameters():
        param.requires_grad = f".{POLICY}." in name and "lora_" in name
    return model


def set_reference(model: Any, adapter: Path | None) -> None:
    """Make `adapter` the frozen reference (None: the bare base) of a policy from `load_policy`, when
    training starts from another adapter than the one it is anchored to (an SFT result before PPO, DPO
    or KTO: the KL stays measured against the champion)."""
    if REFERENCE in getattr(model, "peft_config", {}):
        model.delete_adapter(REFERENCE)
    if adapter is not None:
        try:
            model.load_adapter(str(adapter), adapter_name=REFERENCE, is_trainable=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise TrainerError(f"cannot load the reference adapter {adapter}: {exc}") from exc
    model.set_adapter(POLICY)
    for name, param in model.named_parameters():
        param.requires_grad = f".{POLICY}." in name and "lora_" in name


def reference_mode(model: Any) -> AbstractContextManager[Any]:
    """Forward passes inside this context use the frozen reference (the champion)."""
    if REFERENCE in getattr(model, "peft_config", {}):
        return _SwitchAdapter(model, REFERENCE)
    if hasattr(model, "disable_adapter"):
        context: AbstractContextManager[Any] = model.disable_adapter()
        return context
    return nullcontext()


class _SwitchAdapter:
    def __init__(self, model: Any, name: str) -> None:
        self.model, self.name = model, name

    def __enter__(self) -> Any:
        self.model.set_adapter(self.name)
        return self.model

    def __exit__(self, *exc: object) -> None:
        self.model.set_adapter(POLICY)
        for name, param in self.model.named_parameters():  # set_adapter re-enables grads of the active one
            if f".{REFERENCE}." in name:
                param.requires_grad = False


def save_policy_adapter(model: Any, folder: Path) -> None:
    """Save the trainable `policy` adapter as a plain default adapter (what the service loads)."""
    import shutil

    model.save_pretrained(str(folder), selected_adapters=[POLICY])
    nested = folder / POLICY  # peft saves non-default adapters in a subfolder
    if nested.is_dir():
        for item in nested.iterdir():
            shutil.move(str(item), folder / item.name)
        nested.rmdir()


def load_reward_model(source: str, cfg: TrainConfig | None, *, lora: bool, pad_token_id: int) -> Any:
    """A scalar-head model: from a policy base (new head) or a previous kbloop reward model folder."""
    import torch
    from transformers import AutoModelForSequenceClassification

    folder = Path(source)
    meta = folder / REWARD_META
    torch.manual_seed(cfg.seed if cfg else 0)
    if meta.exists():
        info = json.loads(meta.read_text())
        base, adapter = info["base"], info.get("adapter")
    else:
        base, adapter = source, None
    try:
        model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32)
    except (OSError, ValueError) as exc:
        raise TrainerError(f"cannot load a reward model from {base!r}: {exc}") from exc
    model.config.pad_token_id = pad_token_id
    if adapter is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(folder / adapter), is_trainable=cfg is not None)
    elif meta.exists():
        model = AutoModelForSequenceClassification.from_pretrained(
            str(folder / "model"), num_labels=1, dtype=torch.float32
        )
        model.config.pad_token_id = pad_token_id
    elif cfg is not None and lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(cfg, "SEQ_CLS", modules_to_save=["score"]))
    return model


def reward_base(source: str) -> str:
    """The base model a reward model folder (or a plain base) tokenizes with."""
    meta = Path(source) / REWARD_META
    return str(json.loads(meta.read_text())["base"]) if meta.exists() else source


def save_reward_model(model: Any, folder: Path, base: str, stats: dict[str, float]) -> None:
    """Adapter (or full weights) + a small metadata file with the base and the reward mean/std."""
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "peft_config"):
        model.save_pretrained(str(folder / "adapter"))
        adapter: str | None = "adapter"
    else:
        model.save_pretrained(str(folder / "model"))
        adapter = None
    meta = {"base": base, "adapter": adapter, **stats}
    (folder / REWARD_META).write_text(json.dumps(meta, indent=2))


def reward_stats(folder: Path) -> dict[str, float]:
    data = json.loads((folder / REWARD_META).read_text())
    return {"mean": float(data.get("mean", 0.0)), "std": float(data.get("std", 1.0))}


class ValueHead:
    """Factory for the PPO value head: Linear(hidden, 1), zero-initialised bias, small weights."""

    @staticmethod
    def create(hidden_size: int, seed: int) -> torch.nn.Module:
        import torch

        generator = torch.Generator().manual_seed(seed)
        head = torch.nn.Linear(hidden_size, 1)
        with torch.no_grad():
            head.weight.copy_(torch.randn(head.weight.shape, generator=generator) / hidden_size)
            head.bias.zero_()
        return head


def hidden_size(model: Any) -> int:
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return int(config.hidden_size)
