"""The engine on a GPU (skipped where there is none; run on the lent GPU machine, see bench/RESULTS.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import torch

from registry.loading import placement
from service.generation.base import SamplingParams
from service.generation.engine import BatchingEngine
from tests.service.tiny import tiny_model, tiny_tokenizer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


async def run_all(engine: BatchingEngine, prompts: list[list[int]], params: SamplingParams) -> list[str]:
    async def one(ids: list[int]) -> str:
        text = ""
        async for event in engine.submit(ids, params).events():
            text += event.text
        return text

    return list(await asyncio.gather(*(one(p) for p in prompts)))


def test_auto_placement_is_cuda_bf16() -> None:
    where = placement("auto")
    assert where.device == "cuda" and where.dtype in (torch.bfloat16, torch.float16)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_batched_decoding_on_cuda(dtype: Any) -> None:
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=2).to("cuda", dtype)
    engine = BatchingEngine(model, tokenizer, max_batch=8, batch_wait_ms=20)
    try:
        texts = ("VPN drops", "Where is HR in Boston?", "parking")
        prompts = [list(tokenizer(t)["input_ids"]) for t in texts]
        params = SamplingParams(max_new_tokens=16, temperature=0.0)
        batched = asyncio.run(run_all(engine, prompts, params))
        alone = [asyncio.run(run_all(engine, [p], params))[0] for p in prompts]
    finally:
        engine.close()
    assert all(batched) and max(engine.stats().batch_sizes) == 3
    if dtype == torch.float32:
        assert batched == alone  # exact in float32; bf16 rounding may differ with the batch shape
