"""Generation throughput benchmark: plain `model.generate` vs the batching engine, 1 and N streams.

    python bench/serving.py                              # ~5 min on 2 CPU cores
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
plus the question (rag/prompting.py) go through the tokenizer's chat template.

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

from rag.prompting import Passage, build_messages  # noqa: E402
from registry.loading import base_model_path, load_policy  # noqa: E402
from service.generation.base import GenerationEvent, RequestHandle, SamplingParams  # noqa: E402
from service.generation.engine import BatchingEngine  # noqa: E402

CORPUS = REPO / "examples" / "acme-handbook"


@dataclass(frozen=True)
class Completed:
    """One engine request: its prompt, its streamed text and its timestamps."""

    prompt: int  # index into the prompts
    text: str
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


class ForwardLog:
    """Every forward pass of the model while entered, seen through hooks: (rows, new tokens, real tokens,
    seconds). Tells prefills (more than one new token) from decode steps and shows the batch sizes the
    engine really ran, without touching the engine."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.passes: list[tuple[int, int, int, float]] = []
        self._started = 0.0
        self._shape: tuple[int, int, int] = (0, 0, 0)
        self._hooks: list[Any] = []

    def __enter__(self) -> ForwardLog:
        self._hooks = [
            self.model.register_forward_pre_hook(self._before, with_kwargs=True),
            self.model.register_forward_hook(self._after, with_kwargs=True),
        ]
        return self

    def __exit__(self, *_: object) -> None:
        for hook in self._hooks:
            hook.remove()

    def _before(self, _module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
        mask = kwargs.get("attention_mask")
        rows, width = ids.shape
        real = rows * width if mask is None or width == 1 else int(mask[:, -width:].sum())
        self._shape = (rows, width, real)
        self._started = time.perf_counter()

    def _after(self, module: Any, _args: Any, _kwargs: Any, _out: Any) -> None:
        _sync(next(module.parameters()).device)
        self.passes.append((*self._shape, time.perf_counter() - self._started))

    def summary(self) -> dict[str, Any]:
        prefills = [p for p in self.passes if p[1] > 1]
        decodes = [p for p in self.passes if p[1] == 1]
        decode_s = sum(p[3] for p in decodes)
        decode_tokens = sum(p[0] for p in decodes)
        return {
            "prefills": len(prefills),
            "prefill_rows": dict(sorted(Counter(p[0] for p in prefills).items())),
            "prefill_s": round(sum(p[3] for p in prefills), 2),
            "prefill_padding_share": round(
                1 - sum(p[2] for p in prefills) / max(sum(p[0] * p[1] for p in prefills), 1), 3
            ),
            "decode_steps": len(decodes),
            "decode_rows": dict(sorted(Counter(p[0] for p in decodes).items())),
            "mean_decode_rows": round(decode_tokens / len(decodes), 2) if decodes else None,
            "decode_s": round(decode_s, 2),
            "decode_tokens_per_s": round(decode_tokens / decode_s, 2) if decode_s else None,
        }


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


def build_index(work: Path) -> Path:
    from rag.config import RagConfig
    from rag.ingest import ingest

    index = work / "index"
    ingest([CORPUS], index, RagConfig())
    return index


def golden_questions(golden_path: Path, n: int) -> list[str]:
    from rag.evaluation import load_golden

    return [g.question for g in load_golden(golden_path)][:n]


def make_prompts(tokenizer: Any, index: Path, questions: list[str], passages: int) -> list[list[int]]:
    """Token ids of RAG prompts as the service builds them (rag/prompting.py): the retrieved
    handbook passages and a golden question, through the tokenizer's chat template."""
    from rag.config import RagConfig
    from rag.search import Retriever

    def encode(messages: list[dict[str, str]]) -> list[int]:
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return [int(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]

    retriever = Retriever(index, RagConfig())
    prompts = []
    for question in questions:
        hits = retriever.search(question, k=passages).hits
        numbered = [Passage(i, h.chunk_id, h.source, h.title, h.section, h.text)
                    for i, h in enumerate(hits, start=1)]  # fmt: skip
        conversation = [{"role": "user", "content": question}]
        messages, _ = build_messages(conversation, numbered, lambda m: len(encode(m)), budget=1_000_000)
        prompts.append(encode(messages))
    return prompts


def end_to_end(
    index: Path, model_path: str, device: str, questions: list[str], max_tokens: int
) -> dict[str, Any]:
    """RAG answers through the real HTTP API (uvicorn on loopback), one at a time: where the time goes."""
    import socket
    import threading

    import httpx
    import uvicorn

    from core.settings import Settings
    from ui.server import create_app

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), index_dir=index, model=model_path, device=device, port=port)
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        parts: dict[str, list[float]] = {}
        wall: list[float] = []
        refused = 0
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
                ask = {"messages": [{"role": "user", "content": questions[0]}], "max_tokens": 4}
                http.post("/v1/chat/completions", json=ask).raise_for_status()  # warm-up
                for question in questions:
                    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens,
                            "temperature": 0}  # fmt: skip
                    t0 = time.perf_counter()
                    response = http.post("/v1/chat/completions", json=body)
                    wall.append(time.perf_counter() - t0)
                    response.raise_for_status()
                    kb = response.json()["kbloop"]
                    refused += kb["refused"]
                    for name, value in kb["latency_ms"].items():
                        parts.setdefault(name, []).append(value)
        finally:
            server.should_exit = True
            thread.join(30)
    out: dict[str, Any] = {"requests": len(questions), "refused": refused, "max_tokens": max_tokens,
                           "http_wall_p50_ms": round(ms(percentile(wall, 50)), 1)}  # fmt: skip
    for name, values in sorted(parts.items()):
        out[f"{name}_p50_ms"] = round(percentile(values, 50), 1)
        out[f"{name}_p95_ms"] = round(percentile(values, 95), 1)
    return out


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _generate(model: Any, tokenizer: Any, ids: list[int], n: int) -> tuple[list[int], float]:
    """(generated ids, wall seconds) of one greedy `generate` forced to exactly n tokens."""
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
    return out[0, len(ids) :].tolist(), time.perf_counter() - start


def baseline(
    model: Any, tokenizer: Any, prompts: list[list[int]], n: int
) -> tuple[dict[str, Any], list[list[int]]]:
    """Plain `generate`, one prompt at a time: tokens/s with N tokens, TTFT from a 1-token call.
    Also returns each prompt's generated ids, the reference the engine's text is checked against."""
    tokens, seconds, ttft, outputs = 0, 0.0, [], []
    for ids in prompts:
        made, wall = _generate(model, tokenizer, ids, n)
        outputs.append(made)
        tokens += len(made)
        seconds += wall
        ttft.append(_generate(model, tokenizer, ids, 1)[1])
        print(f"  baseline: {len(made)} tokens in {wall:.2f} s, ttft {ms(ttft[-1])} ms", flush=True)
    decode_s = (seconds - sum(ttft)) / max(tokens - len(prompts), 1)
    summary = {
        "requests": len(prompts),
        "completion_tokens": tokens,
        "wall_s": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 2),
        "ttft_p50_ms": ms(percentile(ttft, 50)),
        "ttft_p95_ms": ms(percentile(ttft, 95)),
        "decode_ms_per_token": ms(decode_s),
    }
    return summary, outputs


async def _complete(engine: BatchingEngine, prompt: int, ids: list[int], params: SamplingParams) -> Completed:
    handle: RequestHandle = engine.submit(ids, params)
    text = ""
    async for event in handle.events():
        text += event.text
        if event.finished:
            if event.finish_reason not in ("stop", "length"):
                raise RuntimeError(f"generation ended with {event.finish_reason}: {event.error}")
            return Completed(
                prompt, text, handle.submitted_at, handle.first_token_at, time.perf_counter(), event
            )
    raise RuntimeError("the stream ended without a final event")


def _summary(
    done: list[Completed], wall: float, tokenizer: Any, reference: list[list[int]]
) -> dict[str, Any]:
    """Rates and latencies of engine requests; `same_text_as_generate` counts the requests whose text
    is plain `generate`'s on the same prompt, cut to the tokens the engine generated."""
    tokens = sum(c.final.completion_tokens for c in done)
    ttft = [t for t in (c.ttft_s for c in done) if t is not None]
    decode = [
        (c.finished_at - c.first_token_at) / (c.final.completion_tokens - 1)
        for c in done
        if c.first_token_at is not None and c.final.completion_tokens > 1
    ]
    same = sum(
        c.text == tokenizer.decode(reference[c.prompt][: c.final.completion_tokens], skip_special_tokens=True)
        for c in done
    )
    return {
        "requests": len(done),
        "completion_tokens": tokens,
        "mean_completion_tokens": round(tokens / len(done), 1),
        "stopped_early": sum(c.final.finish_reason == "stop" for c in done),
        "same_text_as_generate": same,
        "wall_s": round(wall, 2),
        "tokens_per_s": round(tokens / wall, 2),
        "ttft_p50_ms": ms(percentile(ttft, 50)) if ttft else None,
        "ttft_p95_ms": ms(percentile(ttft, 95)) if ttft else None,
        "decode_ms_per_token_p50": ms(percentile(decode, 50)) if decode else None,
    }


def single_stream(
    engine: BatchingEngine, prompts: list[list[int]], n: int, reference: list[list[int]]
) -> dict[str, Any]:
    """The engine with one request at a time; rate = generated tokens / the requests' summed wall time."""
    params = SamplingParams(max_new_tokens=n, temperature=0.0)

    async def run() -> list[Completed]:
        done = []
        for i, ids in enumerate(prompts):
            c = await _complete(engine, i, ids, params)
            done.append(c)
            ttft = ms(c.ttft_s) if c.ttft_s is not None else None
            print(f"  single: {c.final.completion_tokens} tokens in {c.finished_at - c.submitted_at:.2f} s,"
                  f" ttft {ttft} ms", flush=True)  # fmt: skip
        return done

    with ForwardLog(engine.model) as passes:
        done = asyncio.run(run())
    wall = sum(c.finished_at - c.submitted_at for c in done)
    return {**_summary(done, wall, engine.tokenizer, reference), "forward_passes": passes.summary()}


def concurrent(
    engine: BatchingEngine,
    prompts: list[list[int]],
    n: int,
    concurrency: int,
    waves: int,
    reference: list[list[int]],
) -> dict[str, Any]:
    """`concurrency` requests kept in flight over the prompts cycled `waves` times: a client submits its
    next request as soon as its previous one ends. Rate = all generated tokens / wall time."""
    params = SamplingParams(max_new_tokens=n, temperature=0.0)
    work = [(i % len(prompts), prompts[i % len(prompts)]) for i in range(concurrency * waves)]

    async def run() -> tuple[list[Completed], float]:
        pending = iter(work)
        done: list[Completed] = []

        async def client() -> None:
            for prompt, ids in pending:  # shared: each client takes the next prompt when its request ends
                done.append(await _complete(engine, prompt, ids, params))
                if len(done) % concurrency == 0:
                    print(f"  concurrent: {len(done)}/{len(work)} done", flush=True)

        start = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return done, time.perf_counter() - start

    with ForwardLog(engine.model) as passes:
        done, wall = asyncio.run(run())
    return {
        **_summary(done, wall, engine.tokenizer, reference),
        "concurrency": concurrency,
        "forward_passes": passes.summary(),  # rows per decode step and prefill, from forward hooks
    }


def warm_up(
    model: Any, tokenizer: Any, engine: BatchingEngine, prompts: list[list[int]], concurrency: int
) -> None:
    """Outside every timing: one full prompt through `generate` and the engine, then a burst of short
    prompts so the engine's batched prefill, joins and decode steps have all run once."""
    _generate(model, tokenizer, prompts[0], 8)
    params = SamplingParams(max_new_tokens=8, temperature=0.0)

    async def run() -> None:
        await _complete(engine, 0, prompts[0], params)
        short = [prompts[i % len(prompts)][:128] for i in range(concurrency)]
        await asyncio.gather(*(_complete(engine, i, ids, params) for i, ids in enumerate(short)))

    asyncio.run(run())


def report(results: dict[str, Any]) -> str:
    """The human summary of a results dict."""
    base, single, many = results["baseline"], results["single_stream"], results["concurrent"]
    ratios, prompts = results["ratios"], results["prompts"]
    streams = f"engine, {many['concurrency']} streams"
    width = len(streams)

    def line(name: str, r: dict[str, Any]) -> str:
        text = f"  {name:<{width}}  {r['tokens_per_s']:7.2f} tok/s  ttft p50 {r['ttft_p50_ms']:7.1f} ms"
        text += f"  p95 {r['ttft_p95_ms']:7.1f} ms"
        if "same_text_as_generate" in r:
            text += (f"  | {r['stopped_early']}/{r['requests']} stopped early,"
                     f" {r['same_text_as_generate']}/{r['requests']} same text as generate")  # fmt: skip
        return text

    return "\n".join(
        [
            f"{Path(results['model']).name} ({results['dtype']}, {results['machine']['device']}), "
            f"prompts {prompts['tokens_min']}-{prompts['tokens_max']} tokens, "
            f"{results['max_new_tokens']} new tokens, greedy",
            line("baseline generate", base),
            line("engine, 1 stream", single),
            line(streams, many),
            f"  engine / baseline      {ratios['single_vs_baseline']:.3f}  (target >= 0.9),"
            f" ttft p50 {ratios['ttft_p50_single_vs_baseline']:.3f}x the baseline's",
            f"  {many['concurrency']} streams / 1 stream  {ratios['concurrent_vs_single']:.3f}"
            "  (target >= 3)",
            f"  under load: decode steps per batch size {many['forward_passes']['decode_rows']}, "
            f"prefills per batch size {many['forward_passes']['prefill_rows']}, "
            f"{many['forward_passes']['prefill_s']} s of {many['wall_s']} s in prefill",
            f"  decode-only tokens/s: 1 stream {single['forward_passes']['decode_tokens_per_s']}, "
            f"{many['concurrency']} streams {many['forward_passes']['decode_tokens_per_s']}",
            *(
                [
                    f"  end to end over HTTP ({e2e['requests']} questions, {e2e['refused']} refused): "
                    f"retrieval p50 {e2e.get('retrieval_p50_ms')} ms, prompt {e2e.get('prompt_p50_ms')} ms, "
                    f"generation {e2e.get('generation_p50_ms')} ms, ttft {e2e.get('ttft_p50_ms')} ms, "
                    f"total {e2e.get('total_p50_ms')} ms (p95 {e2e.get('total_p95_ms')} ms)"
                ]
                if (e2e := results.get("end_to_end"))
                else []
            ),
            f"  bench wall time {results['bench_wall_s']} s",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="", help="HF folder or hub id; empty = the bundled SmolLM2-135M")
    parser.add_argument("--models-dir", type=Path, default=REPO / "var" / "models")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--golden", type=Path, default=CORPUS / "golden.jsonl")
    parser.add_argument("--prompts", type=int, default=8, help="golden questions turned into prompts")
    parser.add_argument("--passages", type=int, default=3, help="passages per prompt (service default: 3)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--concurrency", type=int, default=8, help="requests kept in flight")
    parser.add_argument("--waves", type=int, default=3, help="concurrent requests = concurrency x waves")
    parser.add_argument("--max-batch", type=int, default=8, help="the engine's max_batch (service default)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the engine's batch_wait_ms")
    parser.add_argument(
        "--e2e", type=int, default=8, help="questions answered through the HTTP API (0: skip)"
    )
    parser.add_argument(
        "--prompts-file", type=Path, help="read prompt token ids (JSON) instead of retrieving"
    )
    parser.add_argument("--save-prompts", type=Path, help="write the prompt token ids (JSON) and exit")
    parser.add_argument(
        "--out", type=Path, default=None, help="default: bench/results/serving[-BACKEND].json"
    )
    parser.add_argument("--backend", choices=["transformers", "llamacpp"], default="transformers",
                        help="llamacpp: kbloop on llama.cpp beside llama-server alone and the transformers "
                             "engine (bench/serving_llamacpp.py)")  # fmt: skip
    parser.add_argument(
        "--weights", choices=["f16", "q8_0", "shipped"], default="f16", help="llamacpp: which GGUF"
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="llamacpp: llama-server threads (0 = all cores)"
    )
    parser.add_argument("--held-out", type=Path, default=REPO / "bench" / "questions" / "extra-heldout.jsonl")
    parser.add_argument(
        "--held-out-questions", type=int, default=20, help="llamacpp: held-out questions asked"
    )
    parser.add_argument("--held-out-tokens", type=int, default=160, help="llamacpp: their max_tokens")
    parser.add_argument("--skip-transformers", action="store_true", help="llamacpp: no transformers arm")
    args = parser.parse_args()
    if args.out is None:
        suffix = "" if args.backend == "transformers" else f"-{args.backend}"
        args.out = REPO / "bench" / "results" / f"serving{suffix}.json"

    started = time.perf_counter()
    model, tokenizer, path = load(args.model, args.models_dir, args.device)
    device = next(model.parameters()).device
    work = tempfile.TemporaryDirectory()
    index: Path | None = None
    if args.prompts_file:  # e.g. on a GPU box without the retrieval stack
        prompts = [[int(t) for t in p] for p in json.loads(args.prompts_file.read_text())]
    else:
        index = build_index(Path(work.name))
        questions = golden_questions(args.golden, max(args.prompts, args.e2e))
        prompts = make_prompts(tokenizer, index, questions[: args.prompts], args.passages)
    if args.save_prompts:
        args.save_prompts.write_text(json.dumps(prompts))
        print(f"wrote {len(prompts)} prompts to {args.save_prompts}")
        return
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
    if args.backend == "llamacpp":
        assert index is not None, "--backend llamacpp retrieves: it cannot use --prompts-file"
        llamacpp_bench(args, results, model, tokenizer, path, prompts, index, questions)
        results["bench_wall_s"] = round(time.perf_counter() - started, 1)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(json.dumps(results["llamacpp"]["ratios"], indent=1) + f"\nwrote {args.out}")
        return
    engine = BatchingEngine(
        model, tokenizer, model_id=Path(path).name, max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms, queue_size=max(64, args.concurrency),
    )  # fmt: skip
    try:
        warm_up(model, tokenizer, engine, prompts, args.concurrency)
        base, reference = baseline(model, tokenizer, prompts, args.max_new_tokens)
        results["baseline"] = base
        results["single_stream"] = single = single_stream(engine, prompts, args.max_new_tokens, reference)
        results["concurrent"] = many = concurrent(
            engine, prompts, args.max_new_tokens, args.concurrency, args.waves, reference
        )
    finally:
        engine.close()
    if args.e2e and index is not None:
        del model, engine
        results["end_to_end"] = end_to_end(
            index, path, args.device, questions[: args.e2e], args.max_new_tokens
        )
        print(json.dumps(results["end_to_end"], indent=1), flush=True)
    work.cleanup()
    results["ratios"] = {
        "single_vs_baseline": round(single["tokens_per_s"] / base["tokens_per_s"], 3),
        "concurrent_vs_single": round(many["tokens_per_s"] / single["tokens_per_s"], 3),
        "ttft_p50_single_vs_baseline": round(single["ttft_p50_ms"] / base["ttft_p50_ms"], 3),
    }
    results["targets"] = {
        "single_vs_baseline_ge_0.9": results["ratios"]["single_vs_baseline"] >= 0.9,
        "concurrent_vs_single_ge_3": results["ratios"]["concurrent_vs_single"] >= 3.0,
    }
    results["bench_wall_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print("\n" + report(results) + f"\nwrote {args.out}")


def llamacpp_bench(
    args: argparse.Namespace, results: dict[str, Any], model: Any, tokenizer: Any, path: str,
    prompts: list[list[int]], index: Path, questions: list[str],
) -> None:  # fmt: skip
    """--backend llamacpp: the transformers engine first (1 and N streams), then the llama.cpp arms."""
    from bench import serving_llamacpp

    if not args.skip_transformers:
        engine = BatchingEngine(
            model, tokenizer, model_id=Path(path).name, max_batch=args.max_batch,
            batch_wait_ms=args.batch_wait_ms, queue_size=max(64, args.concurrency),
        )  # fmt: skip
        no_reference: list[list[int]] = [[] for _ in prompts]
        try:
            warm_up(model, tokenizer, engine, prompts, args.concurrency)
            single = single_stream(engine, prompts, args.max_new_tokens, no_reference)
            many = concurrent(
                engine, prompts, args.max_new_tokens, args.concurrency, args.waves, no_reference
            )
        finally:
            engine.close()
        for arm in (single, many):
            arm.pop("same_text_as_generate")
        one_answer = round(single["wall_s"] / single["requests"], 3)
        results["transformers"] = {
            "single_stream": single,
            "concurrent": many,
            "one_answer_mean_s": one_answer,
        }
    del model
    results["llamacpp"] = out = serving_llamacpp.run(
        args, tokenizer, path, prompts, index, questions[: args.prompts]
    )
    if "transformers" in results:
        tf = results["transformers"]
        out["ratios"]["engine_one_answer_vs_transformers"] = round(
            tf["one_answer_mean_s"] / out["kbloop_engine"]["one_answer_mean_s"], 3
        )
        out["ratios"]["engine_concurrent_vs_transformers"] = round(
            out["kbloop_engine"]["concurrent"]["tokens_per_s"] / tf["concurrent"]["tokens_per_s"], 3
        )
        http = out["kbloop_http"]
        out["ratios"]["http_one_answer_vs_transformers"] = round(
            tf["one_answer_mean_s"] / http["one_answer_mean_s"], 3
        )
        out["ratios"]["http_concurrent_vs_transformers"] = round(
            http["concurrent"]["tokens_per_s"] / tf["concurrent"]["tokens_per_s"], 3
        )


if __name__ == "__main__":
    main()
