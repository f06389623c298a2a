"""The vLLM backend: request mapping, stream parsing, failure mapping and the backend choice (always), a
fake OpenAI server for streams that break off or stall (always), and the real vLLM server on CPU serving
the bundled SmolLM2-135M and a PEFT LoRA (only where the vLLM venv exists: `make install-vllm`)."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from service.errors import ModelUnavailable, QueueFull
from service.generation.backends import choose_backend
from service.generation.base import GenerationEvent, RequestHandle, SamplingParams
from service.generation.peft_check import AdapterLoadFailed, check_adapter
from service.generation.vllm import VllmBackend, VllmEngine
from service.generation.vllm_protocol import (
    VllmRequestError,
    completion_body,
    error_message,
    parse_chunk,
    sse_data,
)
from service.generation.vllm_server import adapter_rank, server_lora_rank, vllm_python

GREEDY = SamplingParams(max_new_tokens=24, temperature=0)


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


# --- request and stream mapping ------------------------------------------------------------------------


def test_completion_body_maps_every_sampling_field() -> None:
    params = SamplingParams(
        max_new_tokens=7, temperature=0.0, top_p=0.9, seed=3, repetition_penalty=1.2, stop=("\n\n",)
    )
    body = completion_body([1, 2, 3], params, "v0002")
    assert body["model"] == "v0002"
    assert body["prompt"] == [1, 2, 3]  # token ids: the server decodes exactly the rendered prompt
    assert body["stream"] is True and body["stream_options"]["continuous_usage_stats"] is True
    assert (body["max_tokens"], body["temperature"], body["top_p"], body["seed"]) == (7, 0.0, 0.9, 3)
    assert body["repetition_penalty"] == 1.2
    assert body["stop"] == ["\n\n"]
    five = completion_body([1], SamplingParams(stop=("a", "b", "c", "d", "e")), "m")
    assert five["stop"] == ["a", "b", "c", "d"]  # vLLM takes 4; the 5th is matched by the client
    assert (body["top_k"], body["min_p"]) == (-1, 0.0)  # off: the distribution the reference samples
    assert "seed" not in completion_body([1], SamplingParams(), "m")
    assert completion_body([1], SamplingParams(temperature=-1), "m")["temperature"] == 0.0


def test_sse_lines_and_chunks_parse() -> None:
    assert sse_data(": keep-alive") is None
    assert sse_data("") is None
    assert sse_data("data: [DONE]") == "[DONE]"
    usage = '"usage":{"prompt_tokens":9,"completion_tokens":2}'
    line = 'data: {"choices":[{"text":" Bos","finish_reason":null}],' + usage + "}"
    payload = sse_data(line)
    assert payload is not None
    chunk = parse_chunk(payload)
    assert (chunk.text, chunk.finish_reason, chunk.prompt_tokens, chunk.completion_tokens) == (
        " Bos",
        None,
        9,
        2,
    )
    last = parse_chunk('{"choices":[{"text":"","finish_reason":"length"}],"usage":null}')
    assert (last.text, last.finish_reason, last.completion_tokens) == ("", "length", None)
    usage_only = parse_chunk('{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}')
    assert (usage_only.text, usage_only.completion_tokens) == ("", 4)


def test_error_payloads_raise_with_the_servers_message() -> None:
    with pytest.raises(VllmRequestError, match="out of KV cache"):
        parse_chunk('{"error": {"message": "out of KV cache", "code": 500}}')
    with pytest.raises(VllmRequestError, match="bad thing"):
        parse_chunk('{"object": "error", "message": "bad thing"}')
    with pytest.raises(VllmRequestError, match="unreadable"):
        parse_chunk("{not json")
    assert error_message('{"error":{"message":"too long","code":400}}') == "too long"
    assert error_message("plain text") == "plain text"


# --- adapters and the backend choice --------------------------------------------------------------------


def write_adapter(
    folder: Path, rank: int = 8, truncate: int = 0, rank_pattern: dict[str, int] | None = None
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = {"peft_type": "LORA", "r": rank, "lora_alpha": 16, "target_modules": ["q_proj"]}
    if rank_pattern:
        config["rank_pattern"] = rank_pattern
    (folder / "adapter_config.json").write_text(json.dumps(config))
    header = json.dumps({"a": {"dtype": "F32", "shape": [rank, 4], "data_offsets": [0, rank * 16]}}).encode()
    data = struct.pack("<Q", len(header)) + header + bytes(rank * 16)
    (folder / "adapter_model.safetensors").write_bytes(data[: len(data) - truncate])
    return folder


def test_adapter_checks_refuse_what_vllm_would_choke_on(tmp_path: Path) -> None:
    check_adapter(write_adapter(tmp_path / "ok", rank=8), max_rank=16)
    with pytest.raises(AdapterLoadFailed, match="truncated"):
        check_adapter(write_adapter(tmp_path / "cut", truncate=5), max_rank=16)
    with pytest.raises(AdapterLoadFailed, match="max-lora-rank 16"):
        check_adapter(write_adapter(tmp_path / "big", rank=32), max_rank=16)
    check_adapter(write_adapter(tmp_path / "unknown-limit", rank=32))  # external server: vLLM decides
    with pytest.raises(AdapterLoadFailed, match=r"no adapter_config\.json"):
        check_adapter(tmp_path / "missing")
    ia3 = write_adapter(tmp_path / "ia3")
    (ia3 / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    with pytest.raises(AdapterLoadFailed, match="not a LoRA"):
        check_adapter(ia3)
    garbage = write_adapter(tmp_path / "garbage")
    (garbage / "adapter_model.safetensors").write_bytes(b"\x00\x01")
    with pytest.raises(AdapterLoadFailed, match="not a safetensors"):
        check_adapter(garbage)


def write_shaped_adapter(folder: Path, shapes: dict[str, list[int]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 2}))
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = shape[0] * shape[1] * 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    (folder / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(offset))
    return folder


def test_adapter_shapes_must_fit_the_base(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    config = {"hidden_size": 16, "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2}
    (base / "config.json").write_text(json.dumps({**config, "intermediate_size": 32}))
    attn = "base_model.model.model.layers.{}.self_attn.{}.lora_{}.weight"
    fits = {
        attn.format(1, "q_proj", "A"): [2, 16],
        attn.format(1, "q_proj", "B"): [16, 2],
        attn.format(1, "k_proj", "B"): [8, 2],  # 2 kv heads of 4 dims
        "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight": [2, 32],
    }
    check_adapter(write_shaped_adapter(tmp_path / "fits", fits), base=base)
    with pytest.raises(AdapterLoadFailed, match="not trained on the base"):
        check_adapter(
            write_shaped_adapter(tmp_path / "wide", {attn.format(0, "v_proj", "B"): [16, 2]}), base=base
        )
    with pytest.raises(AdapterLoadFailed, match="not trained on the base"):
        check_adapter(
            write_shaped_adapter(tmp_path / "other", {attn.format(0, "o_proj", "A"): [2, 64]}), base=base
        )
    with pytest.raises(AdapterLoadFailed, match="adapts layer 5"):
        check_adapter(
            write_shaped_adapter(tmp_path / "deep", {attn.format(5, "q_proj", "A"): [2, 16]}), base=base
        )


def test_server_lora_rank_covers_the_adapters_in_steps_vllm_accepts(tmp_path: Path) -> None:
    assert adapter_rank(write_adapter(tmp_path / "a", rank=8, rank_pattern={"q_proj": 24})) == 24
    assert server_lora_rank([]) == 16
    assert server_lora_rank([8, 4]) == 16
    assert server_lora_rank([24]) == 32
    assert server_lora_rank([8], configured=64) == 64
    assert server_lora_rank([1000]) == 512


def test_backend_choice_rules(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n")
    python.chmod(0o755)
    missing = str(tmp_path / "missing")
    no_llama = str(tmp_path / "no-llama-server")
    assert choose_backend(Settings(backend="vllm", vllm_python=str(python))) == "vllm"
    assert choose_backend(Settings(backend="vllm", vllm_python=missing, vllm_url="http://gpu:8000")) == "vllm"
    with pytest.raises(ModelUnavailable, match="make install-vllm"):
        choose_backend(Settings(backend="vllm", vllm_python=missing))
    # auto: vLLM only on CUDA, and only where it is installed
    assert choose_backend(Settings(device="cuda", vllm_python=str(python))) == "vllm"
    assert (
        choose_backend(Settings(device="cpu", vllm_python=str(python), llama_server=no_llama))
        == "transformers"
    )
    assert choose_backend(Settings(device="cuda", vllm_python=missing)) == "transformers"
    assert (
        choose_backend(Settings(backend="transformers", device="cuda", vllm_python=str(python)))
        == "transformers"
    )


# --- a fake OpenAI server: streams that finish, break off, stall or are refused --------------------------

OK, DIES, STALLS, REFUSED = 11, 12, 13, 14  # the prompt's first token id picks the behaviour


def _chunk(text: str, n: int, finish: str | None = None) -> bytes:
    data = {
        "choices": [{"text": text, "finish_reason": finish}],
        "usage": {"prompt_tokens": 3, "completion_tokens": n},
    }
    return f"data: {json.dumps(data)}\n\n".encode()


async def _fake_openai(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = next(
        (int(h.split(":")[1]) for h in head.split("\r\n") if h.lower().startswith("content-length")), 0
    )
    body = json.loads(await reader.readexactly(length)) if length else {}
    if head.startswith("GET /v1/models"):
        payload = json.dumps({"data": [{"id": "base", "parent": None}, {"id": "v0002", "parent": "base"}]})
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(payload)}\r\n\r\n{payload}".encode())
    elif body.get("stream") is False:  # the smoke prompt
        payload = json.dumps(
            {"choices": [{"text": "Hi"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}
        )
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {len(payload)}\r\n\r\n{payload}".encode())
    elif body.get("prompt", [0])[0] == REFUSED:
        payload = json.dumps(
            {"error": {"message": "This model's maximum context length is 2048", "code": 400}}
        )
        writer.write(f"HTTP/1.1 400 Bad Request\r\nContent-Length: {len(payload)}\r\n\r\n{payload}".encode())
    else:
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n")
        writer.write(_chunk("Hello", 1))
        first = body["prompt"][0]
        if first == OK:
            writer.write(_chunk(" there", 2) + _chunk("", 2, "stop") + b"data: [DONE]\n\n")
        elif first == STALLS:
            for n in range(2, 400):
                writer.write(_chunk(" x", n))
                await writer.drain()
                await asyncio.sleep(0.05)
        # DIES: the connection closes after one chunk, without a finish reason or [DONE]
    await writer.drain()
    writer.close()


@pytest.fixture
def fake_engine() -> Iterator[Callable[[Callable[[VllmEngine], Awaitable[Any]]], Any]]:
    """Run a coroutine against a `VllmEngine` whose external server is the fake above."""

    def run(body: Callable[[VllmEngine], Awaitable[Any]]) -> Any:
        async def main() -> Any:
            server = await asyncio.start_server(_fake_openai, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            backend = VllmBackend([OK], url=f"http://127.0.0.1:{port}", slots=2, queue_size=1)
            await asyncio.to_thread(backend.ensure, "v0001", None, {"v0001"})
            engine = VllmEngine(backend, "v0001", tokenizer=None, context_window=2048)
            try:
                return await body(engine)
            finally:
                server.close()

        return asyncio.run(main())

    yield run


def test_a_stream_finishes_with_text_counts_and_the_base_model_name(fake_engine: Any) -> None:
    async def body(engine: VllmEngine) -> Any:
        return await collect(engine.submit([OK, 5, 6], GREEDY))

    text, final = fake_engine(body)
    assert text == "Hello there"
    assert (final.finish_reason, final.prompt_tokens, final.completion_tokens) == ("stop", 3, 2)


def test_stop_strings_beyond_the_servers_four_end_the_stream_here(fake_engine: Any) -> None:
    params = SamplingParams(stop=("1", "2", "3", "4", "o x"))  # the stalling stream: "Hello", " x", " x"...

    async def body(engine: VllmEngine) -> Any:
        return await collect(engine.submit([STALLS], params))

    started = time.perf_counter()
    text, final = fake_engine(body)
    assert text == "Hell" and final.finish_reason == "stop"
    assert time.perf_counter() - started < 5  # it hung up instead of reading the endless stream


def test_a_stream_that_breaks_off_ends_with_an_error_event(fake_engine: Any) -> None:
    async def body(engine: VllmEngine) -> Any:
        result = await asyncio.wait_for(collect(engine.submit([DIES], GREEDY)), 10)
        return result, engine.stats().errors, engine.backend.pending

    (text, final), errors, pending = fake_engine(body)
    assert text == "Hello"
    assert final.finish_reason == "error" and final.error and "before it finished" in final.error
    assert (errors, pending) == (1, 0)


def test_refusals_deadlines_and_cancellation_map_to_finish_reasons(fake_engine: Any) -> None:
    async def body(engine: VllmEngine) -> Any:
        refused = await asyncio.wait_for(collect(engine.submit([REFUSED], GREEDY)), 10)
        started = time.perf_counter()
        timed = await asyncio.wait_for(collect(engine.submit([STALLS], GREEDY, timeout_s=0.4)), 10)
        timed_after = time.perf_counter() - started
        handle = engine.submit([STALLS], GREEDY)
        cancelled = await asyncio.wait_for(collect(handle, on_first_text=handle.cancel), 10)
        await asyncio.sleep(0.1)
        return refused, timed, timed_after, cancelled, engine.backend.pending

    refused, timed, timed_after, cancelled, pending = fake_engine(body)
    assert refused[1].finish_reason == "error" and "maximum context length" in (refused[1].error or "")
    assert timed[1].finish_reason == "timeout" and timed_after < 3
    assert cancelled[1].finish_reason == "cancelled"
    assert pending == 0


def test_the_queue_is_bounded(fake_engine: Any) -> None:
    async def body(engine: VllmEngine) -> Any:
        handles = [engine.submit([STALLS], GREEDY) for _ in range(3)]  # slots 2 + queue 1
        with pytest.raises(QueueFull):
            engine.submit([STALLS], GREEDY)
        assert engine.stats().queue_depth == 1 and engine.stats().active == 2
        for handle in handles:
            handle.cancel()
        await asyncio.gather(*(collect(h) for h in handles))
        await asyncio.sleep(0.1)
        return engine.backend.pending

    assert fake_engine(body) == 0


def test_an_external_server_names_its_base_model(fake_engine: Any) -> None:
    async def body(engine: VllmEngine) -> Any:
        return await asyncio.to_thread(engine.backend.lease, "v0001")

    url, model = fake_engine(body)
    assert model == "base" and url.startswith("http://127.0.0.1:")


# --- the real vLLM server on CPU --------------------------------------------------------------------------

needs_vllm = pytest.mark.skipif(
    vllm_python() is None,
    reason="vLLM is not installed here (no .venv-vllm/bin/python; `make install-vllm` installs it)",
)
LONG = SamplingParams(max_new_tokens=1500, temperature=0.8, seed=1)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One vLLM server for the module: the bundled SmolLM2-135M (converted to an HF folder), LoRA on."""
    from registry.loading import base_model_path
    from registry.versions import ModelDirectory
    from service.generation.backends import VllmVersions

    root = tmp_path_factory.mktemp("vllm")
    settings = Settings(
        data_dir=root / "var",
        backend="vllm",
        device="cpu",
        vllm_max_num_seqs=4,
        vllm_max_loras=2,
        vllm_max_lora_rank=16,
        queue_size=2,
        # a 1 GiB KV cache: by default vLLM takes a share of the machine's memory
        vllm_args="--kv-cache-memory-bytes 1073741824",
        vllm_startup_timeout_s=900,
    )
    base_dir = base_model_path("", settings.models_dir)
    directory = ModelDirectory(settings.models_dir)
    base = directory.ensure_base(base_dir)
    versions = VllmVersions(settings)
    yield settings, directory, versions, base
    versions.close()


def chat_prompt(engine: Any, question: str = "Where is the HR department in Boston?") -> list[int]:
    text = engine.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )
    return list(engine.tokenizer(text, add_special_tokens=False)["input_ids"])


def add_lora_version(
    directory: Any, base_dir: str, version_id: str, rank: int = 8, scale: float = 0.5
) -> Any:
    """A random PEFT LoRA on the attention projections, large enough to move greedy tokens."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from registry.versions import ModelVersion

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"])
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    peft_model.save_pretrained(directory.root / "versions" / version_id / "adapter")
    return directory.add(ModelVersion(id=version_id, base=base_dir, adapter="adapter", parent="v0001"))


def tiny_base(folder: Path) -> Path:
    """Another base (a tiny LLaMA with the same module names and other shapes), as an HF folder."""
    from tests.service.tiny import tiny_model

    tiny_model(49152, seed=2).save_pretrained(folder)
    return folder


def served_models(url: str) -> list[str]:
    import httpx

    return [m["id"] for m in httpx.get(f"{url}/v1/models", timeout=10).json()["data"]]


@needs_vllm
def test_vllm_answers_greedily_and_reproducibly(stack: Any) -> None:
    _, _, versions, base = stack
    started = time.perf_counter()
    engine = versions.engine(base, keep={base.id})
    backend = versions.backends()[0]
    assert backend.server is not None and backend.server.started_in_s > 0
    assert time.perf_counter() - started >= backend.server.started_in_s

    async def run() -> Any:
        ids = chat_prompt(engine)
        first = await collect(engine.submit(ids, GREEDY))
        second = await collect(engine.submit(ids, GREEDY))
        return ids, first, second

    ids, (text, final), (again, _) = asyncio.run(run())
    assert text.strip() and text == again
    assert final.finish_reason in ("stop", "length")
    assert final.prompt_tokens == len(ids) and 0 < final.completion_tokens <= GREEDY.max_new_tokens
    assert engine.stats().tokens >= final.completion_tokens


@needs_vllm
def test_a_lora_version_loads_answers_differently_and_unloads(stack: Any) -> None:
    _, directory, versions, base = stack
    lora = add_lora_version(directory, base.base, "v0002")
    base_engine = versions.engine(base, keep={base.id})
    engine = versions.engine(lora, keep={base.id, lora.id})
    backend = versions.backends()[0]
    assert lora.id in served_models(backend.url)

    async def run() -> Any:
        ids = chat_prompt(engine)
        return await collect(base_engine.submit(ids, GREEDY)), await collect(engine.submit(ids, GREEDY))

    (base_text, _), (lora_text, final) = asyncio.run(run())
    assert final.finish_reason in ("stop", "length") and final.completion_tokens > 0
    assert lora_text != base_text

    versions.engine(base, keep={base.id})  # v0002 is no longer an alias nor loaded: unloaded
    assert lora.id not in served_models(backend.url)
    assert lora.id not in backend.loaded()


@needs_vllm
def test_bad_adapters_are_refused_by_name_and_the_base_keeps_serving(stack: Any) -> None:
    _, directory, versions, base = stack
    engine = versions.engine(base, keep={base.id})
    backend = versions.backends()[0]
    big = add_lora_version(directory, base.base, "v0003", rank=32)
    with pytest.raises(AdapterLoadFailed, match="max-lora-rank"):
        versions.engine(big, keep={base.id, big.id})
    cut = add_lora_version(directory, base.base, "v0004")
    weights = directory.root / "versions" / "v0004" / "adapter" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(AdapterLoadFailed, match="truncated"):
        versions.engine(cut, keep={base.id, cut.id})
    other = add_lora_version(directory, str(tiny_base(directory.root / "tiny")), "v0005")
    with pytest.raises(AdapterLoadFailed, match="not trained on the base"):  # vLLM would serve it
        versions.engine(replace(other, base=base.base), keep={base.id, other.id})
    assert set(backend.loaded()) == {base.id}

    async def answer() -> tuple[str, GenerationEvent]:
        return await collect(engine.submit(chat_prompt(engine), GREEDY))

    text, final = asyncio.run(answer())
    assert text and final.finish_reason in ("stop", "length")


@needs_vllm
def test_a_server_killed_mid_stream_ends_the_stream_with_an_error_and_restarts(stack: Any) -> None:
    _, _, versions, base = stack
    engine = versions.engine(base, keep={base.id})
    backend = versions.backends()[0]
    server = backend.server
    assert server is not None

    async def run() -> Any:
        ids = chat_prompt(engine)
        killed = await asyncio.wait_for(collect(engine.submit(ids, LONG), on_first_text=server.kill), 120)
        after = await asyncio.wait_for(collect(engine.submit(ids, GREEDY)), 900)
        return killed, after

    (_, final), (text, after) = asyncio.run(run())
    assert final.finish_reason == "error" and final.error
    assert "exited mid-stream" in final.error
    assert backend.restarts == 1 and backend.server is not server
    assert text and after.finish_reason in ("stop", "length")


@needs_vllm
def test_canary_promotion_and_rollback_through_the_app_drop_no_request(stack: Any, make_client: Any) -> None:
    """The service on the module's server as an external one (KBLOOP_VLLM_URL): a LoRA version is
    canaried, promoted while 16 requests are in flight and rolled back; every answer arrives."""
    import concurrent.futures

    from registry.registry import Registry
    from tests.service.conftest import PARKING, ask

    _, _, versions, base = stack
    versions.engine(base, keep={base.id})
    url = versions.backends()[0].url
    client = make_client(model=base.base, backend="vllm", vllm_url=url, vllm_max_num_seqs=4, queue_size=64)
    runtime = client.app.state.kbloop.runtime
    assert runtime.backend == "vllm"
    add_lora_version(runtime.models, base.base, "v0002")
    registry = Registry(runtime.models.root)

    def smoke(version: Any) -> None:
        runtime.engine(version)  # what the API's promote/canary/rollback do

    def one(conversation: str = "c") -> tuple[int, str]:
        body = ask(PARKING, max_tokens=8, stream=False, conversation_id=conversation)
        response = client.post("/v1/chat/completions", json=body)
        return response.status_code, response.json().get("kbloop", {}).get("model_version", "")

    registry.set_canary("v0002", 1.0, actor="ana", reason="all of it", smoke=smoke)
    runtime._share_read_at = float("-inf")  # skip the 1 s cache in the test
    assert one("canary-conv") == (200, "v0002")
    assert "v0002" in served_models(url)
    registry.set_canary(None, 0.0, actor="ana", reason="done")
    runtime._share_read_at = float("-inf")

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        first = [pool.submit(one) for _ in range(16)]
        registry.promote("v0002", actor="ana", reason="hot swap", override=True, smoke=smoke)
        second = [pool.submit(one) for _ in range(16)]
        results = [f.result() for f in first + second]
    assert all(status == 200 for status, _ in results), results
    assert all(version == "v0002" for _, version in results[16:])

    registry.rollback(actor="ana", reason="back", smoke=smoke)
    assert one() == (200, "v0001")


@needs_vllm
def test_the_registry_smoke_test_loads_answers_and_unloads_on_vllm(stack: Any) -> None:
    """service.smoke on the vLLM backend (here the module's server as KBLOOP_VLLM_URL): the adapter is
    loaded under a name of its own, answers, and is unloaded; a bad one raises by name."""
    from service.generation.backends import smoke_version_vllm
    from service.smoke import smoke_test

    settings, directory, versions, base = stack
    versions.engine(base, keep={base.id})
    url = versions.backends()[0].url
    external = settings.model_copy(update={"vllm_url": url})
    lora = add_lora_version(directory, base.base, "v0006")
    assert smoke_version_vllm(lora, external)
    smoke_test(lora, external)
    assert not [m for m in served_models(url) if m.startswith("smoke-")]
    big = add_lora_version(directory, base.base, "v0007", rank=32)
    big_weights = directory.root / "versions" / "v0007" / "adapter" / "adapter_model.safetensors"
    big_weights.write_bytes(big_weights.read_bytes()[:-10])
    with pytest.raises(AdapterLoadFailed, match="truncated"):
        smoke_test(big, external)
