"""Checks of a PEFT LoRA folder before a server loads it: what vLLM would refuse late, or serve wrongly.

vLLM reads the trainer's PEFT folder as it is; a missing config, a rank above the server's
--max-lora-rank or a truncated safetensors file would be refused by the server with a less helpful
message (or, for some files, only when the first request uses it), and an adapter trained on another
base is loaded and served without a word by vLLM 0.32 (seen on CPU, 2026-12-03). Each check raises
`AdapterLoadFailed` with what is wrong.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

from registry.errors import ModelUnavailable
from service.generation.vllm_server import adapter_rank


class AdapterLoadFailed(ModelUnavailable):
    """A version's PEFT adapter cannot be served: a bad folder, a refused load or no smoke answer."""


def check_adapter(folder: Path, max_rank: int = 0, base: Path | None = None) -> None:
    """Refuse a PEFT folder vLLM would choke on or silently misuse, before the server sees it: no or
    unreadable config, not a LoRA, a rank above the server's `max_rank` (0 = unknown), missing or
    truncated weights, or (given the `base` folder) weights shaped for another model."""
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except FileNotFoundError:
        raise AdapterLoadFailed(f"{folder} has no adapter_config.json (not a PEFT adapter)") from None
    except (OSError, ValueError) as exc:
        raise AdapterLoadFailed(f"unreadable {folder / 'adapter_config.json'}: {exc}") from exc
    if not isinstance(config, dict) or config.get("peft_type", "LORA") != "LORA":
        raise AdapterLoadFailed(f"{folder} is not a LoRA adapter")
    rank = adapter_rank(folder)
    if max_rank and rank > max_rank:
        raise AdapterLoadFailed(
            f"{folder} has LoRA rank {rank}, above the vLLM server's --max-lora-rank {max_rank} "
            "(set KBLOOP_VLLM_MAX_LORA_RANK and restart)"
        )
    weights = folder / "adapter_model.safetensors"
    if not weights.exists():
        if not (folder / "adapter_model.bin").exists():
            raise AdapterLoadFailed(f"{folder} has no adapter weights (adapter_model.safetensors)")
        return
    header = _safetensors_header(weights)
    if base is not None:
        _check_shapes(header, base, folder)


def _safetensors_header(path: Path) -> dict[str, Any]:
    """The tensors a safetensors file lists, once its header parses and the file is as long as they need
    (a truncated copy is not)."""
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length)) if length < 100_000_000 else None
        size = path.stat().st_size
    except (OSError, struct.error, ValueError) as exc:
        raise AdapterLoadFailed(f"{path} is not a safetensors file: {exc}") from exc
    if not isinstance(header, dict):
        raise AdapterLoadFailed(f"{path} is not a safetensors file")
    tensors = {k: t for k, t in header.items() if k != "__metadata__"}
    end = max((int(t["data_offsets"][1]) for t in tensors.values()), default=0)
    if size < 8 + length + end:
        raise AdapterLoadFailed(f"{path} is truncated ({size} bytes, its header needs {8 + length + end})")
    return tensors


LORA_TENSOR = re.compile(r"layers\.(\d+)\..*\.(\w+)\.lora_([AB])(?:\.\w+)?\.weight$")


def _check_shapes(tensors: dict[str, Any], base: Path, folder: Path) -> None:
    """Each LoRA factor of a decoder layer's attention and MLP projections fits the base's config.json:
    lora_A is (rank, in), lora_B is (out, rank). Modules it does not know are left to vLLM."""
    try:
        config = json.loads((base / "config.json").read_text())
        hidden, heads, layers = (
            config["hidden_size"],
            config["num_attention_heads"],
            config["num_hidden_layers"],
        )
    except (OSError, ValueError, KeyError):
        return  # not a LLaMA-style config: nothing to compare with
    kv_heads = config.get("num_key_value_heads") or heads
    head_dim = config.get("head_dim") or hidden // heads
    inter = config.get("intermediate_size") or 0
    q, kv = heads * head_dim, kv_heads * head_dim
    dims = {  # module -> (in, out)
        "q_proj": (hidden, q),
        "k_proj": (hidden, kv),
        "v_proj": (hidden, kv),
        "o_proj": (q, hidden),
        "gate_proj": (hidden, inter),
        "up_proj": (hidden, inter),
        "down_proj": (inter, hidden),
    }
    for name, tensor in tensors.items():
        match = LORA_TENSOR.search(name)
        if match is None or match.group(2) not in dims:
            continue
        layer, module, factor = int(match.group(1)), match.group(2), match.group(3)
        if layer >= layers:
            raise AdapterLoadFailed(f"{folder} adapts layer {layer}; the base {base.name} has {layers}")
        shape = list(tensor.get("shape") or [])
        size_in, size_out = dims[module]
        fits = len(shape) == 2 and (shape[1] == size_in if factor == "A" else shape[0] == size_out)
        if not fits:
            raise AdapterLoadFailed(
                f"{folder} was not trained on the base {base.name}: {name} has shape {shape}, the base's "
                f"{module} is {size_in} -> {size_out}"
            )
