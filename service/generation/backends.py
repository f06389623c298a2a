"""Which backend generates (KBLOOP_BACKEND), and how a model version becomes a llama.cpp or vLLM engine.

`auto` picks vLLM on CUDA (KBLOOP_DEVICE=cuda) where it is installed (a vLLM venv's python, or an
external server in KBLOOP_VLLM_URL); llama.cpp when its server binary is installed and the policy is the
bundled model (a GGUF to begin with), on CPU; otherwise the transformers engine, which stays the
reference and the fallback (an HF folder given in KBLOOP_MODEL is served by llama.cpp only when asked
for with KBLOOP_BACKEND=llamacpp: it is converted to F16 by llama.cpp's own converter first). Asking for
vLLM where it is not installed is a named error.

For vLLM a version's files are the base HF folder the server loads and, when the version has one, the
PEFT adapter folder the trainer wrote, loaded into the running server as is (service/generation/vllm.py).

For llama.cpp a version's files are: the base GGUF (the shipped Q4_1 file for the bundled policy, or an
F16 conversion of the base folder) and, when the version has a PEFT adapter, that adapter converted to
a GGUF LoRA next to it (`versions/<id>/<adapter>.lora.gguf`, redone when the PEFT weights are newer).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from registry.errors import ModelUnavailable
from service.generation.llama_server import LlamaServer, convert_hf_folder, require_binary, server_binary
from service.generation.vllm_server import adapter_rank, require_python, server_lora_rank, vllm_python

if TYPE_CHECKING:
    from core.settings import Settings
    from registry.versions import ModelVersion
    from service.generation.llamacpp import LlamaCppBackend, LlamaCppEngine, ServerConfig
    from service.generation.vllm import VllmBackend, VllmEngine
    from service.generation.vllm_server import VllmConfig

log = logging.getLogger(__name__)


def vllm_available(settings: Settings) -> bool:
    return bool(settings.vllm_url) or vllm_python(settings.vllm_python) is not None


def choose_backend(settings: Settings) -> str:
    """`vllm`, `llamacpp` or `transformers` (see the module docstring)."""
    if settings.backend == "vllm":
        if not vllm_available(settings):
            require_python(settings.vllm_python)  # raises ModelUnavailable: what to install or set
        return "vllm"
    if settings.backend != "auto":
        return settings.backend
    if settings.device == "cuda" and vllm_available(settings):
        return "vllm"
    if settings.device != "cuda" and not settings.model and server_binary(settings.llama_server) is not None:
        return "llamacpp"
    return "transformers"


def base_gguf(base: str, settings: Settings) -> Path:
    """The GGUF file llama.cpp loads for a version whose base is `base` (an HF folder)."""
    from registry.loading import BUNDLED_NAME, bundled_gguf

    folder = Path(base)
    is_bundled = folder.resolve() == (settings.models_dir / "base" / BUNDLED_NAME).resolve()
    if settings.llamacpp_weights == "shipped" and is_bundled:
        return bundled_gguf()
    if not (folder / "config.json").exists():
        raise ModelUnavailable(f"llama.cpp needs a local model folder or the bundled policy, not {base!r}")
    outtype = "f16" if settings.llamacpp_weights == "shipped" else settings.llamacpp_weights
    try:
        return convert_hf_folder(folder, settings.models_dir / "gguf", outtype)
    except ModelUnavailable as exc:
        if not is_bundled:
            raise
        # no converter (a llama-server from PATH without the sdist) or a failed conversion of the bundled
        # base: the shipped GGUF of the same policy still serves
        log.warning("%s; serving the shipped Q4_1 GGUF instead", exc)
        return bundled_gguf()


def adapter_gguf(version: ModelVersion, settings: Settings, base: Path) -> Path | None:
    """The version's adapter as a GGUF LoRA (converted once, checked against `base`), or None."""
    from service.generation.gguf_lora import convert_adapter

    folder = version.adapter_path(settings.models_dir)
    if folder is None:
        return None
    target = folder.with_name(f"{folder.name}.lora.gguf")
    weights = folder / "adapter_model.safetensors"
    if target.exists() and weights.exists() and target.stat().st_mtime >= weights.stat().st_mtime:
        return target
    return convert_adapter(folder, base, target)


def smoke_prompt_ids(tokenizer: Any, settings: Settings) -> list[int]:
    """The deployment's smoke prompt (registry.smoke_prompt), rendered for the model."""
    from registry.smoke_prompt import smoke_prompt

    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": smoke_prompt(settings)}], tokenize=False, add_generation_prompt=True
    )
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def load_tokenizer(base: str) -> Any:
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(base)
    except (ImportError, OSError, ValueError) as exc:
        raise ModelUnavailable(f"cannot load the tokenizer of {base!r}: {exc}") from exc


def server_config(settings: Settings, model: Path, slots: int | None = None) -> ServerConfig:
    from service.generation.llamacpp import ServerConfig

    return ServerConfig(
        binary=require_binary(settings.llama_server),
        model=model,
        slots=slots or settings.llamacpp_slots,
        context_per_slot=settings.llamacpp_context,
        threads=settings.llamacpp_threads or os.cpu_count() or 1,
        queue_size=settings.queue_size,
        log_dir=settings.data.logs,
    )


class LlamaCppVersions:
    """llama.cpp engines for model versions: one backend process per base GGUF, adapters per version."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._backends: dict[Path, LlamaCppBackend] = {}
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def engine(self, version: ModelVersion, keep: set[str]) -> LlamaCppEngine:
        """Blocking: converts what is missing and (re)starts the process when the adapter set changes.
        Raises a named error (AdapterConversionFailed, ModelUnavailable) and changes nothing on failure."""
        from service.generation.llamacpp import LlamaCppBackend, LlamaCppEngine

        with self._lock:
            base = base_gguf(version.base, self.settings)
            adapter = adapter_gguf(version, self.settings, base)
            tokenizer = self._tokenizers.get(version.base)
            if tokenizer is None:
                tokenizer = self._tokenizers[version.base] = load_tokenizer(version.base)
            backend = self._backends.get(base)
            if backend is None:
                prompt = smoke_prompt_ids(tokenizer, self.settings)
                backend = LlamaCppBackend(server_config(self.settings, base), prompt)
                self._backends[base] = backend
        backend.ensure(version.id, adapter, keep)
        return LlamaCppEngine(backend, version.id, tokenizer)

    def backends(self) -> list[LlamaCppBackend]:
        return list(self._backends.values())

    def close(self) -> None:
        for backend in self.backends():
            backend.close()


def smoke_version(version: ModelVersion, settings: Settings) -> str:
    """Convert the version's adapter, load it in a one-slot llama-server beside its base, and answer the
    smoke prompt greedily; the text it answered. Named errors when any step fails."""
    from service.generation.llamacpp import smoke_server

    base = base_gguf(version.base, settings)
    adapter = adapter_gguf(version, settings, base)
    tokenizer = load_tokenizer(version.base)
    config = server_config(settings, base, slots=1)
    server = LlamaServer(
        config.binary,
        base,
        [] if adapter is None else [adapter],
        slots=1,
        context_per_slot=min(config.context_per_slot, 1024),
        threads=config.threads,
        log_dir=config.log_dir,
    )
    server.start()
    try:
        return smoke_server(server, smoke_prompt_ids(tokenizer, settings), None if adapter is None else 0)
    finally:
        server.stop()


def vllm_config(settings: Settings, base: Path, ranks: list[int]) -> VllmConfig:
    """The managed vLLM server for `base`; `ranks` are the LoRA ranks it must take."""
    import shlex

    from service.generation.vllm_server import VllmConfig

    return VllmConfig(
        python=require_python(settings.vllm_python),
        model=base,
        max_model_len=settings.vllm_max_model_len,
        max_num_seqs=settings.vllm_max_num_seqs,
        max_loras=settings.vllm_max_loras,
        max_lora_rank=server_lora_rank(ranks, settings.vllm_max_lora_rank),
        log_dir=settings.data.logs,
        extra_args=tuple(shlex.split(settings.vllm_args)),
        startup_timeout_s=settings.vllm_startup_timeout_s,
    )


def registry_lora_ranks(models_dir: Path) -> list[int]:
    """The LoRA ranks of every adapter in the model directory (versions/<id>/<adapter>/)."""
    return [adapter_rank(config.parent) for config in models_dir.glob("versions/*/*/adapter_config.json")]


def local_base(version: ModelVersion) -> Path | None:
    """The version's base as a local HF folder (an adapter's shapes are checked against it), or None."""
    folder = Path(version.base)
    return folder if (folder / "config.json").exists() else None


def vllm_base_folder(base: str) -> Path:
    folder = Path(base)
    if not (folder / "config.json").exists():
        raise ModelUnavailable(f"vLLM here loads a local model folder (no hub access), not {base!r}")
    return folder.resolve()


class VllmVersions:
    """vLLM engines for model versions: one server per base folder (or the one at KBLOOP_VLLM_URL, for
    every version), each version's PEFT adapter loaded into it at runtime."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._backends: dict[Path | str, VllmBackend] = {}
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def engine(self, version: ModelVersion, keep: set[str]) -> VllmEngine:
        """Blocking: starts the server if needed, loads the adapter and answers the smoke prompt. Raises a
        named error (AdapterLoadFailed, ModelUnavailable) and leaves the loaded versions serving."""
        from service.generation.vllm import VllmBackend, VllmEngine

        settings = self.settings
        with self._lock:
            key: Path | str = settings.vllm_url or vllm_base_folder(version.base)
            tokenizer = self._tokenizers.get(version.base)
            if tokenizer is None:
                tokenizer = self._tokenizers[version.base] = load_tokenizer(version.base)
            backend = self._backends.get(key)
            if backend is None:
                prompt = smoke_prompt_ids(tokenizer, settings)
                config = None
                if not settings.vllm_url:
                    config = vllm_config(settings, Path(key), registry_lora_ranks(settings.models_dir))
                backend = VllmBackend(
                    prompt,
                    config=config,
                    url=settings.vllm_url,
                    slots=settings.vllm_max_num_seqs,
                    queue_size=settings.queue_size,
                )
                self._backends[key] = backend
        adapter = version.adapter_path(settings.models_dir)
        backend.ensure(version.id, adapter, keep, local_base(version))
        return VllmEngine(backend, version.id, tokenizer, settings.vllm_max_model_len)

    def backends(self) -> list[VllmBackend]:
        return list(self._backends.values())

    def close(self) -> None:
        for backend in self.backends():
            backend.close()


def smoke_version_vllm(version: ModelVersion, settings: Settings) -> str:
    """Load the version on vLLM (a one-off managed server beside its base, or the external server) and
    answer the smoke prompt greedily; the text it answered. Named errors when any step fails."""
    from service.generation.vllm import VllmBackend
    from service.generation.vllm_protocol import smoke_completion

    tokenizer = load_tokenizer(version.base)
    prompt = smoke_prompt_ids(tokenizer, settings)
    adapter = version.adapter_path(settings.models_dir)
    if settings.vllm_url:
        backend = VllmBackend(prompt, url=settings.vllm_url)
    else:
        ranks = [] if adapter is None else [adapter_rank(adapter)]
        config = vllm_config(settings, vllm_base_folder(version.base), ranks)
        backend = VllmBackend(prompt, config=config, slots=1)
    name = f"smoke-{version.id}"
    try:
        backend.ensure(name, adapter, {name}, local_base(version))
        url, model = backend.lease(name)
        backend.release(name)
        return smoke_completion(url, model, prompt)
    finally:
        backend.unload(name)
        backend.close()
