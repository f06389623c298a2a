"""PEFT LoRA → GGUF LoRA: names, shapes, alpha, the rotary row order, and the refusals (no binary needed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.generation.gguf_lora import (
    AdapterConversionFailed,
    convert_adapter,
    read_base_shape,
    rotary_rows,
)

HIDDEN, HEADS, KV_HEADS, LAYERS = 16, 4, 2, 2
KV = HIDDEN // HEADS * KV_HEADS  # 8


def write_base(path: Path, hidden: int = HIDDEN) -> Path:
    """A base GGUF with LLaMA metadata and the attention tensors' shapes (values do not matter here)."""
    import gguf

    writer = gguf.GGUFWriter(path, "llama")
    writer.add_block_count(LAYERS)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    kv = hidden // HEADS * KV_HEADS
    for i in range(LAYERS):
        for name, shape in (
            ("attn_q", (hidden, hidden)),
            ("attn_k", (kv, hidden)),
            ("attn_v", (kv, hidden)),
            ("attn_output", (hidden, hidden)),
        ):
            writer.add_tensor(f"blk.{i}.{name}.weight", np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def write_peft(
    folder: Path,
    rank: int = 2,
    hidden: int = HIDDEN,
    config_rank: int | None = None,
    alpha: float = 8.0,
    rslora: bool = False,
) -> dict[str, np.ndarray]:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    kv = hidden // HEADS * KV_HEADS
    tensors = {}
    for i in range(LAYERS):
        for module, out in (("q_proj", hidden), ("k_proj", kv), ("v_proj", kv)):
            key = f"base_model.model.model.layers.{i}.self_attn.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.normal(size=(rank, hidden)).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = rng.normal(size=(out, rank)).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": config_rank or rank,
        "lora_alpha": alpha,
        "use_rslora": rslora,
        "target_modules": ["q_proj", "k_proj", "v_proj"],
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return tensors


def read_gguf(path: Path) -> tuple[dict[str, object], dict[str, np.ndarray]]:
    import gguf

    reader = gguf.GGUFReader(path)
    fields = {name: f.contents() for name, f in reader.fields.items() if not name.startswith("GGUF.")}
    # numpy order (rows, cols) = reversed GGUF dims
    tensors = {t.name: np.array(t.data).reshape(tuple(reversed(t.shape.tolist()))) for t in reader.tensors}
    return fields, tensors


def test_rotary_rows_interleaves_each_heads_halves() -> None:
    # 2 heads of 4 dims: HF rows per head [a0 a1 | b0 b1] -> llama.cpp [a0 b0 a1 b1]
    w = np.arange(8).reshape(8, 1)
    assert rotary_rows(w, 2)[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    with pytest.raises(AdapterConversionFailed):
        rotary_rows(np.zeros((6, 1)), 2)  # 3 rows per head: no rotary pairs


def test_conversion_names_shapes_alpha_and_permutes_q_and_k(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    peft = write_peft(tmp_path / "adapter", rank=2, alpha=8.0)
    out = convert_adapter(tmp_path / "adapter", base, tmp_path / "adapter.lora.gguf")
    fields, tensors = read_gguf(out)
    assert fields["general.type"] == "adapter"
    assert fields["adapter.type"] == "lora"
    assert fields["adapter.lora.alpha"] == pytest.approx(8.0)
    assert fields["general.architecture"] == "llama"
    assert len(tensors) == LAYERS * 3 * 2
    hf = "base_model.model.model.layers.1.self_attn"
    np.testing.assert_array_equal(tensors["blk.1.attn_q.weight.lora_a"], peft[f"{hf}.q_proj.lora_A.weight"])
    np.testing.assert_array_equal(tensors["blk.1.attn_v.weight.lora_b"], peft[f"{hf}.v_proj.lora_B.weight"])
    # q and k: B's rows reordered head by head (4 heads of 4 dims; 2 kv heads)
    q_b = peft[f"{hf}.q_proj.lora_B.weight"]
    assert tensors["blk.1.attn_q.weight.lora_b"].shape == (HIDDEN, 2)
    np.testing.assert_array_equal(tensors["blk.1.attn_q.weight.lora_b"][:4], q_b[[0, 2, 1, 3]])
    k_b = peft[f"{hf}.k_proj.lora_B.weight"]
    np.testing.assert_array_equal(tensors["blk.1.attn_k.weight.lora_b"][4:8], k_b[[4, 6, 5, 7]])
    assert read_base_shape(base).n_head_kv == KV_HEADS


def test_rslora_alpha_is_folded_for_llamacpps_alpha_over_rank(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "adapter", rank=4, alpha=8.0, rslora=True)
    fields, _ = read_gguf(convert_adapter(tmp_path / "adapter", base, tmp_path / "a.gguf"))
    assert fields["adapter.lora.alpha"] == pytest.approx(16.0)  # 8/sqrt(4) == 16/4


def test_adapter_for_another_base_is_refused_by_name(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "adapter", hidden=32)
    with pytest.raises(AdapterConversionFailed, match="trained for another base"):
        convert_adapter(tmp_path / "adapter", base, tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_rank_that_disagrees_with_the_config_is_refused(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "adapter", rank=2, config_rank=8)
    with pytest.raises(AdapterConversionFailed, match="rank r=8"):
        convert_adapter(tmp_path / "adapter", base, tmp_path / "a.gguf")


def test_truncated_weights_are_refused(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    write_peft(tmp_path / "adapter")
    weights = tmp_path / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(AdapterConversionFailed, match="corrupt or truncated"):
        convert_adapter(tmp_path / "adapter", base, tmp_path / "a.gguf")


def test_missing_config_and_non_lora_are_refused(tmp_path: Path) -> None:
    base = write_base(tmp_path / "base.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(AdapterConversionFailed, match="not a PEFT adapter"):
        convert_adapter(tmp_path / "empty", base, tmp_path / "a.gguf")
    write_peft(tmp_path / "ia3")
    (tmp_path / "ia3" / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(AdapterConversionFailed, match="not LoRA"):
        convert_adapter(tmp_path / "ia3", base, tmp_path / "a.gguf")


def test_auto_backend_picks_llamacpp_only_for_the_bundled_gguf_where_the_server_exists(
    tmp_path: Path,
) -> None:
    from core.settings import Settings
    from service.errors import ModelUnavailable
    from service.generation.backends import choose_backend

    binary = tmp_path / "llama-server"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    assert choose_backend(Settings(llama_server=str(binary))) == "llamacpp"
    assert choose_backend(Settings(llama_server=str(tmp_path / "missing"))) == "transformers"
    assert choose_backend(Settings(llama_server=str(binary), model=str(tmp_path))) == "transformers"
    no_vllm = str(tmp_path / "no-vllm-python")  # where vLLM is installed, auto on CUDA picks it
    assert (
        choose_backend(Settings(llama_server=str(binary), device="cuda", vllm_python=no_vllm))
        == "transformers"
    )
    assert choose_backend(Settings(backend="llamacpp", model=str(tmp_path))) == "llamacpp"
    with pytest.raises(ModelUnavailable, match="vLLM"):
        choose_backend(Settings(backend="vllm", vllm_python=no_vllm))
