"""A version's PEFT LoRA adapter as a GGUF LoRA file that llama.cpp loads beside the base GGUF.

The trainer writes PEFT folders (adapter_config.json + adapter_model.safetensors) against the HF base
folder. llama.cpp wants one GGUF file: `general.type = adapter`, `adapter.type = lora`,
`adapter.lora.alpha`, and for each adapted matrix `<gguf tensor name>.lora_a` (rank, in) and
`.lora_b` (out, rank), named through the `gguf` package's tensor-name map. llama.cpp scales the
product by alpha / rank, as PEFT does (rsLoRA's alpha / sqrt(rank) is folded into alpha).

Two layout facts matter:
- llama.cpp stores the query and key projections of LLaMA-family models with each head's rotary halves
  interleaved (the HF → GGUF conversion permutes their rows). `lora_b` of q_proj / k_proj gets the same
  row permutation (`rotary_rows`); `lora_a` works on the input side and is unchanged.
- Every pair is checked against the base GGUF's tensor shapes before anything is written, so an adapter
  trained for another base (or with inconsistent ranks, or a truncated file) is refused with
  `AdapterConversionFailed`, never half-loaded by the server.

The output is written to a temporary name and renamed: a killed conversion leaves no GGUF behind.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from registry.errors import ModelUnavailable

# PEFT's key for one adapted matrix: <prefix>.<module path>.lora_A.weight / lora_B.weight
_PEFT_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<side>[AB])(?:\.default)?\.weight$")


class AdapterConversionFailed(ModelUnavailable):
    """A PEFT adapter cannot become a GGUF LoRA for this base (wrong base, rank, file, format)."""


@dataclass(frozen=True)
class BaseShape:
    """What the conversion needs to know about the base GGUF."""

    architecture: str
    n_layers: int
    n_head: int
    n_head_kv: int
    tensor_shapes: dict[str, tuple[int, ...]]  # gguf tensor name -> (out, in) in numpy order


def read_base_shape(base_gguf: Path) -> BaseShape:
    """Architecture, head counts and tensor shapes of a base GGUF (metadata only, no weights read)."""
    import gguf

    try:
        reader = gguf.GGUFReader(base_gguf)
    except (OSError, ValueError) as exc:
        raise AdapterConversionFailed(f"cannot read the base GGUF {base_gguf}: {exc}") from exc

    def field(key: str) -> Any:
        found = reader.get_field(key)
        if found is None:
            raise AdapterConversionFailed(f"the base GGUF {base_gguf.name} has no {key!r}")
        return found.contents()

    arch = str(field(gguf.Keys.General.ARCHITECTURE))
    n_head = int(field(gguf.Keys.Attention.HEAD_COUNT.format(arch=arch)))
    kv = reader.get_field(gguf.Keys.Attention.HEAD_COUNT_KV.format(arch=arch))
    shapes = {t.name: tuple(int(n) for n in reversed(t.shape.tolist())) for t in reader.tensors}
    return BaseShape(
        architecture=arch,
        n_layers=int(field(gguf.Keys.LLM.BLOCK_COUNT.format(arch=arch))),
        n_head=n_head,
        n_head_kv=int(kv.contents()) if kv is not None else n_head,
        tensor_shapes=shapes,
    )


def rotary_rows(weight: Any, n_head: int) -> Any:
    """Reorder the rows (out features) of a q/k projection from HF's layout (per head: first half of
    the rotary dims, then the second half) to llama.cpp's (per head: the two halves interleaved).

    (out, k) -> (out, k); out = n_head * head_dim. Row h*head_dim + j*2 + s takes HF row
    h*head_dim + s*head_dim/2 + j (s in {0, 1}, j < head_dim/2).
    """
    out = weight.shape[0]
    if out % (2 * n_head):
        raise AdapterConversionFailed(f"{out} rows do not split into {n_head} heads of rotary pairs")
    half = out // n_head // 2
    rest = weight.shape[1:]
    return weight.reshape(n_head, 2, half, *rest).swapaxes(1, 2).reshape(weight.shape)


def _read_peft(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    config_path = folder / "adapter_config.json"
    weights_path = folder / "adapter_model.safetensors"
    try:
        config = json.loads(config_path.read_text())
    except FileNotFoundError:
        raise AdapterConversionFailed(f"{folder} has no adapter_config.json (not a PEFT adapter)") from None
    except (OSError, ValueError) as exc:
        raise AdapterConversionFailed(f"unreadable {config_path}: {exc}") from exc
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise AdapterConversionFailed(f"{folder} is a {config.get('peft_type')!r} adapter, not LoRA")
    for unsupported in ("rank_pattern", "alpha_pattern"):
        if config.get(unsupported):
            raise AdapterConversionFailed(f"{folder}: per-module {unsupported} is not supported by llama.cpp")
    if config.get("use_dora"):
        raise AdapterConversionFailed(f"{folder}: DoRA adapters are not supported by llama.cpp")
    if not weights_path.exists():
        raise AdapterConversionFailed(f"{folder} has no adapter_model.safetensors")
    try:
        from safetensors.numpy import load_file

        tensors = load_file(str(weights_path))
    except Exception as exc:  # safetensors raises its own error types for truncated or corrupt files
        raise AdapterConversionFailed(f"corrupt or truncated {weights_path}: {exc}") from exc
    return config, tensors


def convert_adapter(adapter_dir: Path, base_gguf: Path, target: Path) -> Path:
    """Write `target` (a GGUF LoRA) from the PEFT folder `adapter_dir`, checked against `base_gguf`."""
    import gguf
    import numpy as np

    config, tensors = _read_peft(adapter_dir)
    base = read_base_shape(base_gguf)
    try:
        arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == base.architecture)
    except StopIteration:
        raise AdapterConversionFailed(f"unknown base architecture {base.architecture!r}") from None
    names = gguf.get_tensor_name_map(arch, base.n_layers)

    pairs: dict[str, dict[str, Any]] = {}
    for key, value in tensors.items():
        match = _PEFT_KEY.match(key)
        if match is None:
            raise AdapterConversionFailed(
                f"{adapter_dir}: unexpected tensor {key!r} (only LoRA A/B is supported)"
            )
        pairs.setdefault(match["module"], {})[match["side"]] = value
    if not pairs:
        raise AdapterConversionFailed(f"{adapter_dir}: the adapter holds no LoRA tensors")

    rank = int(config.get("r", 0))
    alpha = float(config.get("lora_alpha", rank))
    if config.get("use_rslora"):
        alpha = alpha * math.sqrt(rank)  # PEFT scales by alpha/sqrt(r); llama.cpp by alpha/r

    out: list[tuple[str, Any]] = []
    for module, sides in sorted(pairs.items()):
        if set(sides) != {"A", "B"}:
            raise AdapterConversionFailed(f"{adapter_dir}: {module} has lora_{''.join(sides)} only")
        a, b = sides["A"].astype(np.float32), sides["B"].astype(np.float32)
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1] or a.shape[0] != rank:
            raise AdapterConversionFailed(
                f"{adapter_dir}: {module} has lora_A {a.shape} and lora_B {b.shape}, "
                f"inconsistent with rank r={rank} in adapter_config.json"
            )
        gguf_name = names.get_name(module)
        if gguf_name is None:
            raise AdapterConversionFailed(f"{adapter_dir}: {module} has no llama.cpp tensor name")
        expected = base.tensor_shapes.get(f"{gguf_name}.weight")
        if expected is None:
            raise AdapterConversionFailed(
                f"{adapter_dir}: the base GGUF has no {gguf_name}.weight ({module})"
            )
        if expected != (b.shape[0], a.shape[1]):
            raise AdapterConversionFailed(
                f"{adapter_dir}: {module} maps ({a.shape[1]} -> {b.shape[0]}) but the base GGUF's "
                f"{gguf_name}.weight is {expected[1]} -> {expected[0]}: "
                "the adapter was trained for another base"
            )
        if module.endswith("q_proj"):
            b = rotary_rows(b, base.n_head)
        elif module.endswith("k_proj"):
            b = rotary_rows(b, base.n_head_kv)
        out.append((f"{gguf_name}.weight.lora_a", np.ascontiguousarray(a)))
        out.append((f"{gguf_name}.weight.lora_b", np.ascontiguousarray(b)))

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        writer = gguf.GGUFWriter(tmp, base.architecture)
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha)
        for name, array in out:
            writer.add_tensor(name, array)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise AdapterConversionFailed(f"cannot write {target}: {exc}") from exc
    return target
