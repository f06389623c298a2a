"""Before a version serves: load it (base + adapter) on the backend that will serve it and answer one
short prompt, the deployment's own (registry.smoke_prompt). On llama.cpp that means converting its
adapter to a GGUF LoRA, loading it in a llama-server beside its base GGUF and generating a few tokens;
on vLLM, loading its PEFT folder into a server (a one-off managed one, or KBLOOP_VLLM_URL's) and
generating a few tokens; on transformers, finite logits and a few tokens."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.settings import Settings
    from registry.versions import ModelVersion


def smoke_test(version: ModelVersion, settings: Settings) -> None:
    """Raises (a named error where the backend has one) when the version cannot load or answer."""
    from service.generation.backends import choose_backend

    backend = choose_backend(settings)
    if backend == "llamacpp":
        from service.generation.backends import smoke_version

        smoke_version(version, settings)
        return
    if backend == "vllm":
        from service.generation.backends import smoke_version_vllm

        smoke_version_vllm(version, settings)
        return
    _smoke_transformers(version, settings)


def _smoke_transformers(version: ModelVersion, settings: Settings) -> None:
    import torch

    from registry.loading import load_policy
    from registry.smoke_prompt import smoke_prompt

    model, tokenizer = load_policy(version.base, version.adapter_path(settings.models_dir), settings.device)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": smoke_prompt(settings)}], tokenize=False, add_generation_prompt=True
    )
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.no_grad():
        logits = model(**ids).logits[0, -1]
        if not torch.isfinite(logits).all():
            raise RuntimeError("the model produces non-finite logits")
        out = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    if out.shape[1] <= ids["input_ids"].shape[1]:
        raise RuntimeError("the model generated nothing")
