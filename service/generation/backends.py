"""Which backend generates (KBLOOP_BACKEND), and how a model version becomes a llama.cpp engine.

`auto` picks llama.cpp when its server binary is installed and the policy is the bundled model (a GGUF
to begin with), on CPU; otherwise the transformers engine, which stays the reference and the fallback
(an HF folder given in KBLOOP_MODEL is served by llama.cpp only when asked for with
KBLOOP_BACKEND=llamacpp: it is converted to F16 by llama.cpp's own converter first). The vLLM backend
is not built yet: asking for it is a named error.

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

from service.errors import ModelUnavailable
from service.generation.llama_server import LlamaServer, convert_hf_folder, require_binary, server_binary

if TYPE_CHECKING:
    from service.generation.llamacpp import LlamaCppBackend, LlamaCppEngine, ServerConfig
    from service.settings import Settings
    from service.versions import ModelVersion

log = logging.getLogger(__name__)


def choose_backend(settings: Settings) -> str:
    """`llamacpp` or `transformers` (see the module docstring); `vllm` is refused by name."""
    if settings.backend == "vllm":
        raise ModelUnavailable(
            "KBLOOP_BACKEND=vllm: the vLLM backend is not part of this build yet; "
            "use llamacpp or transformers (see README, generation backends)"
        )
    if settings.backend != "auto":
        return settings.backend
    if settings.device != "cuda" and not settings.model and server_binary(settings.llama_server) is not None:
        return "llamacpp"
    return "transformers"


def base_gguf(base: str, settings: Settings) -> Path:
    """The GGUF file llama.cpp loads for a version whose base is `base` (an HF folder)."""
    from service.policy import BUNDLED_NAME, bundled_gguf

    folder = Path(base)
    bundled = settings.models_dir / "base" / BUNDLED_NAME
    if settings.llamacpp_weights == "shipped" and folder.resolve() == bundled.resolve():
        return bundled_gguf()
    if not (folder / "config.json").exists():
        raise ModelUnavailable(f"llama.cpp needs a local model folder or the bundled policy, not {base!r}")
    return convert_hf_folder(folder, settings.models_dir / "gguf")


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
        log_dir=settings.data_dir / "logs",
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
