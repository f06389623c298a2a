from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch

from service.errors import QueueFull
from service.generation.base import GenerationEvent, SamplingParams
from service.generation.engine import BatchingEngine
from tests.service.tiny import tiny_model, tiny_tokenizer

GREEDY = SamplingParams(max_new_tokens=24, temperature=0.0)


@pytest.fixture(scope="module")
def parts() -> tuple[Any, Any]:
    tokenizer = tiny_tokenizer()
    model = tiny_model(len(tokenizer), seed=1)
    # an end-of-sequence the random model never picks keeps outputs at full length
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model, tokenizer


@pytest.fixture
def engine(parts: tuple[Any, Any]) -> Any:
    model, tokenizer = parts
    eng = BatchingEngine(model, tokenizer, max_batch=8, batch_wait_ms=20, queue_size=8)
    yield eng
    eng.close()


def prompt(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text)["input_ids"])


async def collect(handle: Any) -> tuple[str, GenerationEvent]:
    text = ""
    async for event in handle.events():
        text += event.text
        if event.finished:
            return text, event
    raise AssertionError("stream ended without a final event")


def plain_greedy(model: Any, tokenizer: Any, ids: list[int], n: int) -> str:
    with torch.inference_mode():
        out = model.generate(
            torch.tensor([ids]), max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id
        )
    return tokenizer.decode(out[0, len(ids) :], skip_special_tokens=True)


PROMPTS = [
    "Where is the HR department in Boston?",
    "VPN drops",
    "Parking permits cost $90 per month. Answer only from the passages and cite them like [1].",
    "system user",
]


def test_single_request_matches_plain_generate(engine: Any, parts: tuple[Any, Any]) -> None:
    model, tokenizer = parts
    ids = prompt(tokenizer, PROMPTS[0])

    async def main() -> tuple[str, GenerationEvent]:
        return await collect(engine.submit(ids, GREEDY))

    text, final = asyncio.run(main())
    assert text == plain_greedy(model, tokenizer, ids, 24)
    assert final.finish_reason in {"length", "stop"} and final.prompt_tokens == len(ids)
    assert final.completion_tokens == 24 or final.finish_reason == "stop"


def test_concurrent_requests_batch_and_match_alone(engine: Any, parts: tuple[Any, Any]) -> None:
    model, tokenizer = parts
    alone = [plain_greedy(model, tokenizer, prompt(tokenizer, p), 24) for p in PROMPTS]

    async def main() -> list[tuple[str, GenerationEvent]]:
        handles = [engine.submit(prompt(tokenizer, p), GREEDY) for p in PROMPTS]
        return await asyncio.gather(*(collect(h) for h in handles))

    results = asyncio.run(main())
    assert [text for text, _ in results] == alone
    assert max(engine.stats().batch_sizes) == len(PROMPTS)  # decoded together, not one by one


def test_a_request_joins_a_running_batch(engine: Any, parts: tuple[Any, Any]) -> None:
    model, tokenizer = parts
    long_ids, short_ids = prompt(tokenizer, PROMPTS[2]), prompt(tokenizer, PROMPTS[1])
    expected_long = plain_greedy(model, tokenizer, long_ids, 60)
    expected_short = plain_greedy(model, tokenizer, short_ids, 24)

    async def main() -> tuple[tuple[str, GenerationEvent], tuple[str, GenerationEvent]]:
        first = engine.submit(long_ids, SamplingParams(max_new_tokens=60, temperature=0.0))
        text, seen = "", 0
        async for event in first.events():  # let it decode a few tokens before the second arrives
            text += event.text
            seen += 1
            if seen == 5:
                break
        second = engine.submit(short_ids, GREEDY)
        rest, short = await asyncio.gather(collect(first), collect(second))
        return (text + rest[0], rest[1]), short

    (long_text, _), (short_text, _) = asyncio.run(main())
    assert long_text == expected_long
    assert short_text == expected_short
    assert 2 in engine.stats().batch_sizes


def test_cancel_stops_generation(engine: Any, parts: tuple[Any, Any]) -> None:
    _, tokenizer = parts

    async def main() -> GenerationEvent:
        handle = engine.submit(
            prompt(tokenizer, PROMPTS[0]), SamplingParams(max_new_tokens=400, temperature=0)
        )
        async for event in handle.events():
            if event.finished:
                return event
            handle.cancel()
        raise AssertionError

    final = asyncio.run(main())
    assert final.finish_reason == "cancelled"
    assert final.completion_tokens < 400


def test_timeout_and_seeded_sampling(engine: Any, parts: tuple[Any, Any]) -> None:
    _, tokenizer = parts
    ids = prompt(tokenizer, PROMPTS[3])
    seeded = SamplingParams(max_new_tokens=16, temperature=1.0, top_p=0.9, seed=7)

    async def main() -> tuple[GenerationEvent, str, str]:
        _, timed_out = await collect(engine.submit(ids, GREEDY, timeout_s=0.0))
        a, _ = await collect(engine.submit(ids, seeded))
        b, _ = await collect(engine.submit(ids, seeded))
        return timed_out, a, b

    timed_out, a, b = asyncio.run(main())
    assert timed_out.finish_reason == "timeout"
    assert a == b and a


def test_full_queue_raises_and_errors_do_not_kill_the_engine(parts: tuple[Any, Any]) -> None:
    model, tokenizer = parts
    release, entered = threading.Event(), threading.Event()
    fail = {"once": False}

    def hook(*_: Any) -> None:
        entered.set()
        release.wait(10)
        if fail["once"]:
            fail["once"] = False
            raise RuntimeError("CUDA out of memory (simulated)")

    handle_hook = model.register_forward_pre_hook(hook)
    engine = BatchingEngine(model, tokenizer, max_batch=1, batch_wait_ms=0, queue_size=1)
    try:

        async def main() -> tuple[GenerationEvent, GenerationEvent, GenerationEvent]:
            ids = prompt(tokenizer, PROMPTS[1])
            short = SamplingParams(max_new_tokens=3, temperature=0.0)
            fail["once"] = True
            first = engine.submit(ids, short)
            await asyncio.to_thread(entered.wait, 10)  # the worker is inside the model with the first
            second = engine.submit(ids, short)  # waits in the queue (size 1)
            with pytest.raises(QueueFull):
                engine.submit(ids, short)
            release.set()
            _, failed = await collect(first)
            _, ok = await collect(second)
            _, after = await collect(engine.submit(ids, short))
            return failed, ok, after

        failed, ok, after = asyncio.run(main())
    finally:
        release.set()
        handle_hook.remove()
        engine.close()
    assert failed.finish_reason == "error" and "out of memory" in (failed.error or "")
    assert ok.finish_reason == "length" and after.finish_reason == "length"
    assert engine.stats().errors == 1


def test_incremental_decoder_holds_back_partial_characters(parts: tuple[Any, Any]) -> None:
    from service.generation.engine import IncrementalDecoder, _Row

    _, tokenizer = parts
    text = "naïve café ☕ costs 45 dollars"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    decoder, row = IncrementalDecoder(tokenizer), _Row(request=None, generator=None)  # type: ignore[arg-type]
    pieces = []
    for token in ids:
        row.ids.append(token)
        piece = decoder.delta(row)
        assert "\ufffd" not in piece
        pieces.append(piece)
    pieces.append(decoder.delta(row, final=True))
    assert "".join(pieces) == tokenizer.decode(ids) == text
    assert sum(1 for p in pieces if p == "") >= 2  # the multi-byte characters were held back
