"""`bench/serving.py --backend llamacpp`: kbloop on llama.cpp side by side with llama.cpp's own server
alone and with the transformers engine, in one run, same weights, same prompts, greedy.

Arms (each alone on the machine: a server is stopped before the next arm starts):
- `server_alone`: llama-server started by hand (the same flags kbloop uses), requests sent straight to
  its /completion (streamed) with the prompt token ids;
- `kbloop_engine`: the same prompts through kbloop's `LlamaCppEngine` (its managed process, queue,
  deadline watch, streaming) in-process;
- `kbloop_http`: questions answered by the kbloop service over HTTP (uvicorn on loopback: retrieval,
  prompt rendering, llama.cpp generation, answer record), one at a time and `--concurrency` at a time;
  its prompts are the ones the service renders for the same questions (their length is recorded). The
  answer checks are off here, so the service streams the model's own tokens: the same work as the
  server alone, which the speed ratios compare;
- `kbloop_http_checked`: the same as served by default, with the answer checks on (answers end at the
  first sentence that fails its checks and the extractive fallback replaces them: fewer tokens, more
  CPU), then the held-out questions (bench/questions/extra-heldout.jsonl) one at a time, up to
  `--held-out-tokens` tokens: p50/p95 latency;
- `transformers`: the transformers BatchingEngine (float32) on the same prompt ids, 1 and N streams
  (serving.py's own single_stream / concurrent), unless `--skip-transformers`.

"One answer" = the mean wall time of a request alone (submit to last token, prefill included);
"concurrent" = all generated tokens / wall time with `--concurrency` requests in flight over the prompts
cycled `--waves` times.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from service.generation.base import SamplingParams
from service.generation.llama_server import LlamaServer

CONTEXT = 2048  # the default KBLOOP_LLAMACPP_CONTEXT, which the kbloop arms use


def _p(values: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(values), q)), 3)


def _arm_summary(walls: list[float], tokens: list[int], ttft: list[float]) -> dict[str, Any]:
    return {
        "requests": len(walls),
        "completion_tokens": sum(tokens),
        "one_answer_mean_s": round(sum(walls) / len(walls), 3),
        "one_answer_p50_s": _p(walls, 50),
        "tokens_per_s": round(sum(tokens) / sum(walls), 2),
        "ttft_p50_ms": round(_p(ttft, 50) * 1000, 1) if ttft else None,
    }


def _body(ids: list[int], n: int, context: int) -> dict[str, Any]:
    from service.generation.llamacpp import completion_body

    return completion_body(ids, SamplingParams(max_new_tokens=n, temperature=0.0), None, context)


async def _raw_request(client: Any, url: str, ids: list[int], n: int) -> tuple[float, int, float | None]:
    """(wall s, generated tokens, ttft s) of one streamed /completion sent straight to llama-server."""
    start, first, tokens = time.perf_counter(), None, 0
    async with client.stream("POST", f"{url}/completion", json=_body(ids, n, CONTEXT)) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            chunk = json.loads(line[6:])
            if chunk.get("content") and first is None:
                first = time.perf_counter() - start
            if chunk.get("stop"):
                tokens = int(chunk.get("tokens_predicted", 0))
                break
    return time.perf_counter() - start, tokens, first


def server_alone(
    server: LlamaServer, prompts: list[list[int]], n: int, concurrency: int, waves: int
) -> dict[str, Any]:
    import httpx

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=None) as client:
            await _raw_request(client, server.url, prompts[0], 8)  # warm-up
            single = [await _raw_request(client, server.url, ids, n) for ids in prompts]
            work = iter([prompts[i % len(prompts)] for i in range(concurrency * waves)])
            done: list[tuple[float, int, float | None]] = []

            async def worker() -> None:
                for ids in work:
                    done.append(await _raw_request(client, server.url, ids, n))

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall = time.perf_counter() - start
        out = _arm_summary([s[0] for s in single], [s[1] for s in single], [s[2] for s in single if s[2]])
        out["concurrent"] = _concurrent_summary(wall, [d[1] for d in done], concurrency)
        return out

    return asyncio.run(run())


def _concurrent_summary(wall: float, tokens: list[int], concurrency: int) -> dict[str, Any]:
    return {
        "concurrency": concurrency,
        "requests": len(tokens),
        "completion_tokens": sum(tokens),
        "wall_s": round(wall, 2),
        "tokens_per_s": round(sum(tokens) / wall, 2),
    }


def kbloop_engine(
    engine: Any, prompts: list[list[int]], n: int, concurrency: int, waves: int
) -> dict[str, Any]:
    params = SamplingParams(max_new_tokens=n, temperature=0.0)

    async def one(ids: list[int]) -> tuple[float, int, float | None]:
        handle = engine.submit(ids, params)
        async for event in handle.events():
            if event.finished:
                if event.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"generation ended with {event.finish_reason}: {event.error}")
                ttft = None if handle.first_token_at is None else handle.first_token_at - handle.submitted_at
                return time.perf_counter() - handle.submitted_at, event.completion_tokens, ttft
        raise RuntimeError("no final event")

    async def run() -> dict[str, Any]:
        await one(prompts[0][:64])  # warm-up
        single = [await one(ids) for ids in prompts]
        work = iter([prompts[i % len(prompts)] for i in range(concurrency * waves)])
        done: list[tuple[float, int, float | None]] = []

        async def worker() -> None:
            for ids in work:
                done.append(await one(ids))

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - start
        out = _arm_summary([s[0] for s in single], [s[1] for s in single], [s[2] for s in single if s[2]])
        out["concurrent"] = _concurrent_summary(wall, [d[1] for d in done], concurrency)
        return out

    return asyncio.run(run())


def kbloop_http(
    settings: Any,
    questions: list[str],
    held_out: list[str],
    n: int,
    held_out_tokens: int,
    concurrency: int,
    waves: int,
) -> dict[str, Any]:
    """The service over HTTP on llama.cpp: one answer at a time, then `concurrency` at a time, then the
    held-out questions."""
    import httpx
    import uvicorn

    from ui.server import create_app

    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{settings.port}/v1/chat/completions"

    def body(question: str, tokens: int) -> dict[str, Any]:
        return {"messages": [{"role": "user", "content": question}], "max_tokens": tokens, "temperature": 0}

    async def ask(client: Any, question: str, tokens: int) -> tuple[float, int, int, bool]:
        start = time.perf_counter()
        response = await client.post(url, json=body(question, tokens))
        response.raise_for_status()
        data = response.json()
        usage = data.get("usage", {})
        return (
            time.perf_counter() - start,
            int(usage.get("completion_tokens", 0)),
            int(usage.get("prompt_tokens", 0)),
            bool(data["kbloop"]["refused"]),
        )

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(timeout=None) as client:
            await ask(client, questions[0], 4)  # warm-up
            single = [await ask(client, q, n) for q in questions]
            work = iter([questions[i % len(questions)] for i in range(concurrency * waves)])
            done: list[tuple[float, int, int, bool]] = []

            async def worker() -> None:
                for q in work:
                    done.append(await ask(client, q, n))

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            wall = time.perf_counter() - start
            held = [await ask(client, q, held_out_tokens) for q in held_out]
        answered = [s for s in single if not s[3]]
        out = _arm_summary([s[0] for s in answered], [s[1] for s in answered], [])
        out["refused"] = len(single) - len(answered)
        out["prompt_tokens_mean"] = round(sum(s[2] for s in answered) / max(len(answered), 1), 1)
        out["concurrent"] = _concurrent_summary(wall, [d[1] for d in done], concurrency)
        if held:
            held_walls = [h[0] for h in held]
            out["held_out"] = {
                "questions": len(held),
                "max_tokens": held_out_tokens,
                "refused": sum(h[3] for h in held),
                "p50_s": _p(held_walls, 50),
                "p95_s": _p(held_walls, 95),
                "completion_tokens_mean": round(sum(h[1] for h in held) / max(len(held), 1), 1),
            }
        return out

    try:
        return asyncio.run(run())
    finally:
        server.should_exit = True
        thread.join(30)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(
    args: Any, tokenizer: Any, base_path: str, prompts: list[list[int]], index: Path, questions: list[str]
) -> dict[str, Any]:
    """All llama.cpp arms; returns the results dict's `llamacpp` section."""
    from core.settings import Settings
    from registry.versions import ModelDirectory
    from service.generation.backends import LlamaCppVersions, base_gguf, server_config

    threads = args.threads or os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="bench-llamacpp-"))
    settings = Settings(
        data_dir=work / "var",
        index_dir=index,
        model="",
        backend="llamacpp",
        llamacpp_weights=args.weights,
        llamacpp_slots=args.concurrency,
        llamacpp_threads=threads,
        queue_size=max(64, args.concurrency),
        port=free_port(),
    )
    # the bundled base folder is already converted under --models-dir: link it instead of redoing it
    (settings.models_dir / "base").mkdir(parents=True, exist_ok=True)
    bundled = Path(base_path)
    os.symlink(bundled, settings.models_dir / "base" / bundled.name)
    gguf = base_gguf(str(settings.models_dir / "base" / bundled.name), settings)
    config = server_config(settings, gguf)
    out: dict[str, Any] = {
        "weights": args.weights,
        "gguf": gguf.name,
        "threads": threads,
        "slots": config.slots,
        "context_per_slot": config.context_per_slot,
    }

    alone = LlamaServer(
        config.binary,
        gguf,
        [],
        slots=config.slots,
        context_per_slot=config.context_per_slot,
        threads=threads,
        log_dir=work / "logs",
    )
    alone.start()
    try:
        out["server_alone"] = server_alone(alone, prompts, args.max_new_tokens, args.concurrency, args.waves)
    finally:
        alone.stop()
    print("  server alone:", json.dumps(out["server_alone"]), flush=True)

    directory = ModelDirectory(settings.models_dir)
    base = directory.ensure_base(str(settings.models_dir / "base" / bundled.name))
    versions = LlamaCppVersions(settings)
    try:
        engine = versions.engine(base, keep={base.id})

        out["kbloop_engine"] = kbloop_engine(
            engine, prompts, args.max_new_tokens, args.concurrency, args.waves
        )
    finally:
        versions.close()
    print("  kbloop engine:", json.dumps(out["kbloop_engine"]), flush=True)

    held_out = [
        json.loads(line)["question"] for line in args.held_out.read_text().splitlines() if line.strip()
    ]
    # the same work as the server alone (the model's own tokens, no answer checks), then as served
    for arm, checks in (("kbloop_http", False), ("kbloop_http_checked", True)):
        out[arm] = kbloop_http(
            settings.model_copy(update={"answer_checks": checks, "port": free_port()}),
            questions,
            held_out[: args.held_out_questions] if checks else [],
            args.max_new_tokens,
            args.held_out_tokens,
            args.concurrency,
            args.waves,
        )
        print(f"  {arm.replace('_', ' ')}:", json.dumps(out[arm]), flush=True)
    alone_s, http_s = out["server_alone"], out["kbloop_http"]
    out["ratios"] = {
        "engine_one_answer_vs_alone": round(
            alone_s["one_answer_mean_s"] / out["kbloop_engine"]["one_answer_mean_s"], 3
        ),
        "http_one_answer_vs_alone": round(alone_s["one_answer_mean_s"] / http_s["one_answer_mean_s"], 3),
        "checked_http_one_answer_vs_alone": round(
            alone_s["one_answer_mean_s"] / out["kbloop_http_checked"]["one_answer_mean_s"], 3
        ),
        "engine_concurrent_vs_alone": round(
            out["kbloop_engine"]["concurrent"]["tokens_per_s"] / alone_s["concurrent"]["tokens_per_s"], 3
        ),
        "http_tokens_per_s_vs_alone": round(http_s["tokens_per_s"] / alone_s["tokens_per_s"], 3),
        "http_concurrent_vs_alone": round(
            http_s["concurrent"]["tokens_per_s"] / alone_s["concurrent"]["tokens_per_s"], 3
        ),
        "checked_http_concurrent_vs_alone": round(
            out["kbloop_http_checked"]["concurrent"]["tokens_per_s"] / alone_s["concurrent"]["tokens_per_s"],
            3,
        ),
    }
    return out
