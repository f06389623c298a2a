"""The llama.cpp backend for real: a llama-server process serving a tiny LLaMA (SmolLM2's tokenizer,
random weights, converted by llama.cpp's own converter) and its versions' LoRA adapters.

Skipped where llama-server is not installed; `make test` builds it first (scripts/build_llama_server.sh).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from registry.versions import ModelDirectory, ModelVersion
from service.errors import ModelUnavailable, QueueFull
from service.generation.backends import LlamaCppVersions
from service.generation.base import GenerationEvent, RequestHandle, SamplingParams
from service.generation.gguf_lora import AdapterConversionFailed
from service.generation.llama_server import convert_hf_folder, server_binary

pytestmark = pytest.mark.skipif(
    server_binary() is None, reason="llama-server is not installed (make install builds it)"
)

LONG = 1500  # tokens: long enough for the tiny model to still be streaming when the test acts


@pytest.fixture(scope="session")
def smol_tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LLaMA (2 layers, hidden 64) with the bundled SmolLM2 tokenizer, as an HF folder."""
    from transformers import AutoTokenizer

    from registry.loading import bundled_gguf
    from tests.service.tiny import tiny_model

    gguf = bundled_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = tiny_model(len(tokenizer), seed=1, max_positions=4096)
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    folder = tmp_path_factory.mktemp("smol-tiny")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def smol_tiny_gguf(smol_tiny_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return convert_hf_folder(smol_tiny_dir, tmp_path_factory.mktemp("smol-tiny-gguf"))


def llama_settings(tmp_path: Path, model_dir: Path, gguf: Path, **overrides: Any) -> Settings:
    """Settings for the tiny model on llama.cpp; its GGUF is linked where the backend looks for it."""
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "model": str(model_dir),
        "backend": "llamacpp",
        "device": "cpu",
        "llamacpp_slots": 2,
        "llamacpp_context": 2048,
        "llamacpp_threads": 1,
        "queue_size": 2,
        **overrides,
    }
    settings = Settings(**values)
    target = settings.models_dir / "gguf" / gguf.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        os.link(gguf, target)
    return settings


@pytest.fixture
def served(tmp_path: Path, smol_tiny_dir: Path, smol_tiny_gguf: Path) -> Any:
    settings = llama_settings(tmp_path, smol_tiny_dir, smol_tiny_gguf)
    directory = ModelDirectory(settings.models_dir)
    base = directory.ensure_base(str(smol_tiny_dir))
    versions = LlamaCppVersions(settings)
    yield settings, directory, versions, base
    versions.close()


def save_strong_lora(base_dir: Path, target: Path) -> None:
    """A LoRA on all attention projections, large enough to move a random tiny model's greedy tokens."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=targets))
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 2.0)
    peft_model.save_pretrained(target)


def add_adapter_version(directory: ModelDirectory, base_dir: Path, version_id: str) -> ModelVersion:
    save_strong_lora(base_dir, directory.root / "versions" / version_id / "adapter")
    return directory.add(ModelVersion(id=version_id, base=str(base_dir), adapter="adapter", parent="v0001"))


async def collect(handle: RequestHandle, on_first_text: Any = None) -> tuple[str, GenerationEvent]:
    text, first = "", True
    async for event in handle.events():
        if event.text:
            text += event.text
            if first and on_first_text is not None:
                on_first_text()
            first = False
        if event.finished:
            return text, event
    raise AssertionError("the stream ended without a final event")


def prompt(engine: Any, question: str = "Where is the HR department in Boston?") -> list[int]:
    text = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return list(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


GREEDY = SamplingParams(max_new_tokens=24, temperature=0)


def test_streams_text_in_pieces_and_reports_counts(served: Any) -> None:
    _, _, versions, base = served
    engine = versions.engine(base, keep={base.id})

    async def run() -> tuple[list[GenerationEvent], int]:
        ids = prompt(engine)
        handle = engine.submit(ids, GREEDY)
        return [e async for e in handle.events()], len(ids)

    events, prompt_tokens = asyncio.run(run())
    final = events[-1]
    assert final.finished and final.finish_reason in ("length", "stop"), final
    assert len([e for e in events if e.text]) >= 2  # streamed, not one block
    assert final.prompt_tokens == prompt_tokens
    if final.finish_reason == "length":
        assert final.completion_tokens == GREEDY.max_new_tokens
    assert engine.stats().tokens >= final.completion_tokens > 0


def test_greedy_is_deterministic_and_a_seed_repeats_a_sample(served: Any) -> None:
    _, _, versions, base = served
    engine = versions.engine(base, keep={base.id})
    sampled = SamplingParams(max_new_tokens=16, temperature=1.0, seed=7)

    async def run() -> list[str]:
        ids = prompt(engine)
        out = []
        for params in (GREEDY, GREEDY, sampled, sampled):
            out.append((await collect(engine.submit(ids, params)))[0])
        return out

    g1, g2, s1, s2 = asyncio.run(run())
    assert g1 == g2 and s1 == s2
    assert s1 != g1


def test_cancel_frees_the_slot_at_once(served: Any) -> None:
    _, _, versions, base = served
    engine = versions.engine(base, keep={base.id})

    async def run() -> tuple[GenerationEvent, float]:
        handle = engine.submit(prompt(engine), SamplingParams(max_new_tokens=LONG, temperature=0))
        _, final = await collect(handle, on_first_text=handle.cancel)
        return final, time.perf_counter() - handle.submitted_at

    final, seconds = asyncio.run(run())
    assert seconds < 10
    assert final.finish_reason == "cancelled"
    assert final.completion_tokens < LONG
    assert versions.backends()[0].pending == 0
    slots = _slots(versions)
    assert slots is None or not any(s.get("is_processing") for s in slots), slots


def test_deadline_ends_the_stream_with_timeout(served: Any) -> None:
    _, _, versions, base = served
    engine = versions.engine(base, keep={base.id})

    async def run() -> tuple[GenerationEvent, float]:
        started = time.perf_counter()
        handle = engine.submit(
            prompt(engine), SamplingParams(max_new_tokens=LONG, temperature=0), timeout_s=0.3
        )
        _, final = await collect(handle)
        return final, time.perf_counter() - started

    final, seconds = asyncio.run(run())
    assert final.finish_reason == "timeout", final
    assert seconds < 2.0


def test_bounded_queue_refuses_with_retry_after(served: Any) -> None:
    _, _, versions, base = served
    engine = versions.engine(base, keep={base.id})  # 2 slots + queue of 2: the 5th is refused

    async def run() -> QueueFull:
        long = SamplingParams(max_new_tokens=LONG, temperature=0)
        handles = [engine.submit(prompt(engine), long) for _ in range(4)]
        try:
            with pytest.raises(QueueFull) as refused:
                engine.submit(prompt(engine), long)
        finally:
            for h in handles:
                h.cancel()
            for h in handles:
                await collect(h)
        return refused.value

    refused = asyncio.run(run())
    assert refused.status == 503 and refused.retry_after == 1
    assert versions.backends()[0].pending == 0


def test_a_killed_server_ends_the_stream_with_an_error_and_is_restarted(served: Any) -> None:
    _, _, versions, base = served
    engine = versions.engine(base, keep={base.id})
    backend = versions.backends()[0]
    assert backend.server is not None
    pid = backend.server.pid
    assert pid is not None

    async def run() -> tuple[GenerationEvent, GenerationEvent]:
        handle = engine.submit(prompt(engine), SamplingParams(max_new_tokens=LONG, temperature=0))
        _, broken = await asyncio.wait_for(
            collect(handle, on_first_text=lambda: os.kill(pid, signal.SIGKILL)), 30
        )
        _, after = await asyncio.wait_for(collect(engine.submit(prompt(engine), GREEDY)), 60)
        return broken, after

    broken, after = asyncio.run(run())
    assert broken.finish_reason == "error" and broken.error and "exited" in broken.error, broken
    assert after.finish_reason in ("length", "stop") and after.completion_tokens > 0
    assert backend.restarts == 1 and backend.server is not None and backend.server.pid != pid


def test_champion_and_canary_share_one_process_with_per_request_adapters(
    served: Any, smol_tiny_dir: Path
) -> None:
    _, directory, versions, base = served
    tuned = add_adapter_version(directory, smol_tiny_dir, "v0002")
    base_engine = versions.engine(base, keep={base.id})
    tuned_engine = versions.engine(tuned, keep={base.id, tuned.id})
    backend = versions.backends()[0]
    pid = backend.server.pid if backend.server else None
    assert len(versions.backends()) == 1

    async def run() -> tuple[str, str, str]:
        ids = prompt(base_engine)
        plain = (await collect(base_engine.submit(ids, GREEDY)))[0]
        adapted = (await collect(tuned_engine.submit(ids, GREEDY)))[0]
        again = (await collect(base_engine.submit(ids, GREEDY)))[0]  # same slot, its cache had the LoRA
        return plain, adapted, again

    plain, adapted, again = asyncio.run(run())
    assert adapted != plain  # the adapter is applied to its version's requests only
    assert again == plain
    assert backend.server is not None and backend.server.pid == pid  # no restart for either


def test_corrupt_adapter_is_refused_by_name_and_the_previous_version_keeps_serving(
    served: Any, smol_tiny_dir: Path
) -> None:
    settings, directory, versions, base = served
    engine = versions.engine(base, keep={base.id})
    backend = versions.backends()[0]
    pid = backend.server.pid if backend.server else None

    truncated = add_adapter_version(directory, smol_tiny_dir, "v0002")
    weights = directory.root / "versions" / "v0002" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(AdapterConversionFailed, match="corrupt or truncated"):
        versions.engine(truncated, keep={base.id, "v0002"})

    # converted fine, then damaged on disk: llama-server itself refuses it
    broken = add_adapter_version(directory, smol_tiny_dir, "v0003")
    from service.generation.backends import adapter_gguf, base_gguf

    lora = adapter_gguf(broken, settings, base_gguf(broken.base, settings))
    assert lora is not None
    lora.write_bytes(lora.read_bytes()[:-4096])
    with pytest.raises(ModelUnavailable):
        versions.engine(broken, keep={base.id, "v0003"})

    assert backend.server is not None and backend.server.pid == pid  # the old process still serves

    async def run() -> GenerationEvent:
        return (await collect(engine.submit(prompt(engine), GREEDY)))[1]

    assert asyncio.run(run()).finish_reason in ("length", "stop")


def test_smoke_test_on_llamacpp_converts_loads_and_answers(served: Any, smol_tiny_dir: Path) -> None:
    from service.smoke import smoke_test

    settings, directory, _, _ = served
    tuned = add_adapter_version(directory, smol_tiny_dir, "v0002")
    smoke_test(tuned, settings)
    assert (directory.root / "versions" / "v0002" / "adapter.lora.gguf").exists()
    (directory.root / "versions" / "v0002" / "adapter.lora.gguf").unlink()
    (directory.root / "versions" / "v0002" / "adapter" / "adapter_config.json").write_text("{")
    with pytest.raises(AdapterConversionFailed):
        smoke_test(tuned, settings)


def _slots(versions: LlamaCppVersions) -> list[dict[str, Any]] | None:
    import httpx

    server = versions.backends()[0].server
    assert server is not None
    response = httpx.get(f"{server.url}/slots", timeout=5)
    return response.json() if response.status_code == 200 else None
