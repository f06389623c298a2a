"""The vLLM backend on this machine's CPU: server start, one greedy answer, 8 concurrent ones, and whether
the concurrent answers are the ones given alone.

    python bench/vllm_cpu.py                                   # bf16 (vLLM's CPU default), ~2 min
    python bench/vllm_cpu.py --vllm-args '--dtype float32' --out /tmp/vllm-f32.json

Needs the vLLM venv (`make install-vllm`). Through `PolicyRuntime` with KBLOOP_BACKEND=vllm, on the
bundled SmolLM2-135M converted to an HF folder in a temporary data dir, greedy decoding throughout:
- `startup_s`: from the runtime asking for the champion to its engine being ready (server spawned,
  /health answering, smoke prompt answered); `server_health_s` is the spawn-to-/health part;
- `short`: a 38-token chat prompt, up to 64 tokens, twice (total and time to first text);
- `long`: a ≈600-token prompt (handbook text, then the question), 64 tokens, twice (the second hits
  vLLM's prefix cache);
- `concurrent`: 8 copies of the long prompt at once: wall time, tokens, aggregate tokens/s, and
  `same_as_alone` (each answer's text equals the long prompt's answer given alone).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo's packages, not bench/feedback.py, when run as a script
QUESTION = "Where is the HR department in Boston?"


async def answer(engine: Any, ids: list[int], tokens: int) -> dict[str, Any]:
    from service.generation.base import SamplingParams

    started = time.perf_counter()
    first, text = None, ""
    async for event in engine.submit(ids, SamplingParams(max_new_tokens=tokens, temperature=0)).events():
        if event.text and first is None:
            first = time.perf_counter() - started
        text += event.text
        if event.finished:
            return {
                "total_s": round(time.perf_counter() - started, 2),
                "ttft_s": round(first or 0.0, 2),
                "completion_tokens": event.completion_tokens,
                "finish_reason": event.finish_reason,
                "text": text,
            }
    raise RuntimeError("the stream ended without a final event")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--vllm-args", default="", help="extra vLLM server arguments (KBLOOP_VLLM_ARGS)")
    parser.add_argument("--kv-cache-bytes", type=int, default=1 << 30, help="vLLM's KV cache on CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "vllm_cpu.json")
    args = parser.parse_args()

    from core.settings import Settings
    from registry.loading import base_model_path
    from registry.versions import ModelDirectory
    from service.runtime import PolicyRuntime

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "var",
            backend="vllm",
            device="cpu",
            vllm_max_num_seqs=8,
            vllm_args=f"--kv-cache-memory-bytes {args.kv_cache_bytes} {args.vllm_args}".strip(),
        )
        directory = ModelDirectory(settings.models_dir)
        directory.ensure_base(base_model_path("", settings.models_dir))
        runtime = PolicyRuntime(directory, settings)
        try:
            started = time.perf_counter()
            engine = runtime.engine(runtime.resolve("champion"))
            result: dict[str, Any] = {"startup_s": round(time.perf_counter() - started, 1)}
            server = runtime._vllm.backends()[0].server if runtime._vllm else None
            result["server_health_s"] = round(server.started_in_s, 1) if server else None
            result["vllm_args"] = settings.vllm_args
            result.update(asyncio.run(measure(engine)))
        finally:
            runtime.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


async def measure(engine: Any) -> dict[str, Any]:
    tokenizer = engine.tokenizer

    def chat(text: str) -> list[int]:
        rendered = tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(rendered, add_special_tokens=False)["input_ids"])

    handbook = " ".join(p.read_text() for p in sorted((ROOT / "examples" / "acme-handbook").glob("**/*.md")))
    short = chat(QUESTION)
    long = chat("Answer from these passages.\n" + handbook[:20000])[:560] + short
    out: dict[str, Any] = {"short_prompt_tokens": len(short), "long_prompt_tokens": len(long)}
    out["short"] = [await answer(engine, short, 64) for _ in range(2)]
    out["long"] = [await answer(engine, long, 64) for _ in range(2)]
    started = time.perf_counter()
    together = await asyncio.gather(*(answer(engine, long, 64) for _ in range(8)))
    wall = time.perf_counter() - started
    tokens = sum(a["completion_tokens"] for a in together)
    out["concurrent"] = {
        "requests": 8,
        "wall_s": round(wall, 2),
        "tokens": tokens,
        "tokens_per_s": round(tokens / wall, 1),
        "same_as_alone": [a["text"] == out["long"][0]["text"] for a in together],
        "first_text": together[0]["text"],
    }
    return out


if __name__ == "__main__":
    main()
