"""Generation throughput benchmark: plain `model.generate` vs the batching engine, 1 and N streams.

    python bench/serving.py                              # CPU, ~4 min on 2 cores
    python bench/serving.py --device cuda --prompts 16 --waves 8 --max-new-tokens 128
    python bench/serving.py --concurrency 4 --out /tmp/serving-c4.json

One run, one model, the same prompts and greedy decoding everywhere, after a warm-up:
- baseline: `model.generate(max_new_tokens=N, min_new_tokens=N, do_sample=False)` on one prompt at a
  time: tokens/s (N / wall time, prefill included) and the time to first token (TTFT), taken as the
  wall time of a `max_new_tokens=1` call on the same prompt;
- single stream: the same prompts through `BatchingEngine`, one request at a time: tokens/s, TTFT
  (submit to first streamed text) p50/p95, and the ratio to the baseline (target >= 0.9);
- concurrent: the same prompts cycled `--waves` times, `--concurrency` requests kept in flight (a new one
  is submitted as soon as one finishes): aggregate tokens/s = all generated tokens / wall time, the ratio
  to the single stream (target >= 3x), TTFT p50/p95 under load, and the batch sizes the engine ran.

Prompts are what the service sends: the handbook (examples/acme-handbook) is ingested into a temporary
index, the first `--prompts` golden questions are searched (k = `--passages`), and the numbered passages
(service/prompting.py) plus the question go through the tokenizer's chat template.

Equal lengths: the engine stops at an end-of-sequence token and `generate` is forced past it by
`min_new_tokens`, so every rate is tokens the engine really generated (`completion_tokens`) divided by
wall time, never requests per second. A request that stops early has a larger share of prefill in its
wall time, so early stops can only lower the engine's rate: its ratios are then lower bounds. The
number of requests that stopped early is recorded next to each figure.

Writes bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.config import RagConfig  # noqa: E402
from rag.evaluation import load_golden  # noqa: E402
from rag.ingest import ingest  # noqa: E402
from rag.search import Retriever  # noqa: E402
from service.generation.base import GenerationEvent, RequestHandle, SamplingParams  # noqa: E402
from service.generation.engine import BatchingEngine  # noqa: E402
from service.policy import base_model_path, load_policy  # noqa: E402
from service.prompting import Passage, system_message  # noqa: E402

CORPUS = REPO / "examples" / "acme-handbook"


@dataclass(frozen=True)
class Completed:
    """One engine request, timed on the client side."""

    submitted_at: float
    first_token_at: float | None
    finished_at: float
    final: GenerationEvent

    @property
    def ttft_s(self) -> float | None:
        return None if self.first_token_at is None else self.first_token_at - self.submitted_at


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def machine(device: Any) -> dict[str, Any]:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]  # fmt: skip
        cpu = names[0] if names else cpu
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": f"{device.type} ({name})" if device.type == "cuda" else "cpu",
    }


def load(model: str, models_dir: Path, device: str) -> tuple[Any, Any, str]:
    """(model, tokenizer, path): the configured policy, or the bundled one converted once into models_dir."""
    path = base_model_path(model, models_dir)
    policy, tokenizer = load_policy(path, device=device)
    return policy, tokenizer, path


def make_prompts(tokenizer: Any, golden_path: Path, n: int, passages: int) -> list[list[int]]:
    """Token ids of `n` RAG prompts: retrieved handbook passages and a golden question, chat-templated."""
    questions = [g.question for g in load_golden(golden_path)][:n]
    prompts = []
    with tempfile.TemporaryDirectory() as tmp:
        index = Path(tmp) / "index"
        ingest([CORPUS], index, RagConfig())
        retriever = Retriever(index, RagConfig())
        for question in questions:
            hits = retriever.search(question, k=passages).hits
            numbered = [Passage(i, h.chunk_id, h.source, h.title, h.section, h.text)
                        for i, h in enumerate(hits, start=1)]  # fmt: skip
            messages = [
                {"role": "system", "content": system_message(numbered)},
                {"role": "user", "content": question},
            ]
            ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
            if not isinstance(ids, list):  # transformers 5 returns a BatchEncoding
                ids = ids["input_ids"]
            prompts.append([int(t) for t in ids])
    return prompts


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generate(model: Any, tokenizer: Any, ids: list[int], n: int) -> tuple[int, float]:
    """(generated tokens, wall seconds) of one greedy `generate` forced to exactly n tokens."""
    import torch

    device = model.device
    input_ids = torch.tensor([ids], device=device)
    _sync(device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    _sync(device)
    return int(out.shape[1]) - len(ids), time.perf_counter() - start


def baseline(model: Any, tokenizer: Any, prompts: list[list[int]], n: int) -> dict[str, Any]:
    """Plain `generate`, one prompt at a time: tokens/s with N tokens, TTFT from a 1-token call."""
    tokens, seconds, ttft = 0, 0.0, []
    for ids in prompts:
        made, wall = _generate(model, tokenizer, ids, n)
        tokens += made
        seconds += wall
        ttft.append(_generate(model, tokenizer, ids, 1)[1])
        print(f"  baseline: {made} tokens in {wall:.2f} s, ttft {ms(ttft[-1])} ms", flush=True)
    rate = tokens / seconds
    decode_s = (seconds - sum(ttft)) / max(tokens - len(prompts), 1)
    return {
        "requests": len(prompts),
        "completion_tokens": tokens,
        "wall_s": round(seconds, 2),
        "tokens_per_s": round(rate, 2),
        "ttft_p50_ms": ms(percentile(ttft, 50)),
        "ttft_p95_ms": ms(percentile(ttft, 95)),
        "decode_ms_per_token": ms(decode_s),
    }


async def _complete(engine: BatchingEngine, ids: list[int], params: SamplingParams) -> Completed:
    handle: RequestHandle = engine.submit(ids, params)
    async for event in handle.events():
        if event.finished:
            if event.finish_reason not in ("stop", "length"):
                raise RuntimeError(f"generation ended with {event.finish_reason}: {event.error}")
            return Completed(handle.submitted_at, handle.first_token_at, time.perf_counter(), event)
    raise RuntimeError("the stream ended without a final event")


def _summary(done: list[Completed], wall: float) -> dict[str, Any]:
    tokens = sum(c.final.completion_tokens for c in done)
    ttft = [t for t in (c.ttft_s for c in done) if t is not None]
    decode = [
        (c.finished_at - c.first_token_at) / (c.final.completion_tokens - 1)
        for c in done
        if c.first_token_at is not None and c.final.completion_tokens > 1
    ]
    return {
        "requests": len(done),
        "completion_tokens": tokens,
        "mean_completion_tokens": round(tokens / len(done), 1),
        "stopped_early": sum(c.final.finish_reason == "stop" for c in done),
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_ms": ms(percentile(ttft, 50)) if ttft else None,
        "ttft_p95_ms": ms(percentile(ttft, 95)) if ttft else None,
        "decode_ms_per_token_p50": ms(percentile(decode, 50)) if decode else None,
    }


def single_stream(engine: BatchingEngine, prompts: list[list[int]], n: int) -> dict[str, Any]:
    """The engine with one request at a time; rate = generated tokens / the requests' wall time."""
    params = SamplingParams(max_new_tokens=n, temperature=0.0)

    async def run() -> list[Completed]:
        done = []
        for ids in prompts:
            done.append(await _complete(engine, ids, params))
            c = done[-1]
            ttft = ms(c.ttft_s) if c.ttft_s is not None else None
            print(f"  single: {c.final.completion_tokens} tokens in {c.finished_at - c.submitted_at:.2f} s,"
                  f" ttft {ttft} ms", flush=True)  # fmt: skip
        return done

    done = asyncio.run(run())
    return _summary(done, sum(c.finished_at - c.submitted_at for c in done))


def concurrent(
    engine: BatchingEngine, prompts: list[list[int]], n: int, concurrency: int, waves: int
) -> dict[str, Any]:
    """`concurrency` requests kept in flight over the prompts cycled `waves` times; aggregate tokens/s."""
    params = SamplingParams(max_new_tokens=n, temperature=0.0)
    work = [prompts[i % len(prompts)] for i in range(concurrency * waves)]
    before = engine.stats()
    batches, steps, tokens = before.batches, before.steps, before.tokens

    async def run() -> tuple[list[Completed], float]:
        pending = iter(work)
        done: list[Completed] = []

        async def client() -> None:
            for ids in pending:  # shared: each client takes the next prompt when its request ends
                done.append(await _complete(engine, ids, params))
                if len(done) % concurrency == 0:
                    print(f"  concurrent: {len(done)}/{len(work)} done", flush=True)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return done, time.perf_counter() - start

    done, wall = asyncio.run(run())
    after = engine.stats()
    decode_steps = after.steps - steps
    # every request's first token comes from its prefill; the rest from decode steps over the batch
    decode_tokens = after.tokens - tokens - len(done)
    admissions = after.batches - batches
    sizes = after.batch_sizes[-admissions:] if 0 < admissions <= len(after.batch_sizes) else []
    return {
        **_summary(done, wall),
        "concurrency": concurrency,
        "engine_admissions": admissions,
        "engine_decode_steps": decode_steps,
        "mean_rows_per_decode_step": round(decode_tokens / decode_steps, 2) if decode_steps else None,
        "batch_size_after_admission": dict(sorted(Counter(sizes).items())),
    }


def warm_up(model: Any, tokenizer: Any, engine: BatchingEngine, prompts: list[list[int]], n: int) -> None:
    """One generate call and one concurrent burst through the engine, outside every timing."""
    _generate(model, tokenizer, prompts[0], min(n, 8))
    params = SamplingParams(max_new_tokens=min(n, 8), temperature=0.0)

    async def burst() -> None:
        await asyncio.gather(*(_complete(engine, ids, params) for ids in prompts))

    asyncio.run(burst())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="", help="HF folder or hub id; empty = the bundled SmolLM2-135M")
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--golden", type=Path, default=CORPUS / "golden.jsonl")
    parser.add_argument("--prompts", type=int, default=8, help="golden questions turned into prompts")
    parser.add_argument("--passages", type=int, default=4, help="retrieved passages per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8, help="requests kept in flight")
    parser.add_argument("--waves", type=int, default=3, help="concurrent requests = concurrency x waves")
    parser.add_argument("--max-batch", type=int, default=8, help="the engine's max_batch (service default)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the engine's batch_wait_ms")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serving.json")
    args = parser.parse_args()

    started = time.perf_counter()
    model, tokenizer, path = load(args.model, args.models_dir, args.device)
    device = next(model.parameters()).device
    prompts = make_prompts(tokenizer, args.golden, args.prompts, args.passages)
    lengths = [len(p) for p in prompts]
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(device),
        "model": path,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "prompts": {
            "count": len(prompts),
            "passages": args.passages,
            "tokens_min": min(lengths),
            "tokens_mean": round(sum(lengths) / len(lengths), 1),
            "tokens_max": max(lengths),
        },
        "max_new_tokens": args.max_new_tokens,
        "engine": {"max_batch": args.max_batch, "batch_wait_ms": args.batch_wait_ms},
    }
    print(json.dumps(results, indent=1), flush=True)
    engine = BatchingEngine(
        model, tokenizer, model_id=Path(path).name, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, queue_size=max(64, args.concurrency),
    )  # fmt: skip
    try:
        warm_up(model, tokenizer, engine, prompts, args.max_new_tokens)
        results["baseline"] = base = baseline(model, tokenizer, prompts, args.max_new_tokens)
        results["single_stream"] = single = single_stream(engine, prompts, args.max_new_tokens)
        results["concurrent"] = many = concurrent(
            engine, prompts, args.max_new_tokens, args.concurrency, args.waves
        )
    finally:
        engine.close()
    results["ratios"] = {
        "single_vs_baseline": round(single["tokens_per_s"] / base["tokens_per_s"], 3),
        "concurrent_vs_single": round(many["tokens_per_s"] / single["tokens_per_s"], 3),
    }
    results["targets"] = {
        "single_vs_baseline_ge_0.9": results["ratios"]["single_vs_baseline"] >= 0.9,
        "concurrent_vs_single_ge_3": results["ratios"]["concurrent_vs_single"] >= 3.0,
    }
    results["bench_wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(
        f"\n{results['model']} ({results['dtype']}) on {results['machine']['device']}, prompts "
        f"{results['prompts']['tokens_min']}-{results['prompts']['tokens_max']} tokens, "
        f"{args.max_new_tokens} new tokens, greedy\n"
        f"  baseline generate   {base['tokens_per_s']:8.2f} tok/s   ttft p50 {base['ttft_p50_ms']} ms"
        f"  p95 {base['ttft_p95_ms']} ms\n"
        f"  engine, 1 stream    {single['tokens_per_s']:8.2f} tok/s   ttft p50 {single['ttft_p50_ms']} ms"
        f"  p95 {single['ttft_p95_ms']} ms   ({single['stopped_early']} stopped early)\n"
        f"  engine, {args.concurrency} streams  {many['tokens_per_s']:8.2f} tok/s   ttft p50 "
        f"{many['ttft_p50_ms']} ms  p95 {many['ttft_p95_ms']} ms   ({many['stopped_early']} stopped early)\n"
        f"  engine / baseline   {results['ratios']['single_vs_baseline']:.3f}  (target >= 0.9)\n"
        f"  {args.concurrency} streams / 1      {results['ratios']['concurrent_vs_single']:.3f}  "
        f"(target >= 3)\n"
        f"  rows per decode step {many['mean_rows_per_decode_step']}, batch size after each admission "
        f"{many['batch_size_after_admission']}\n"
        f"wrote {args.out} ({results['bench_wall_s']} s)"
    )


if __name__ == "__main__":
    main()
