"""vLLM's OpenAI-compatible HTTP API as the vLLM backend speaks it: the /v1/completions request for a
`SamplingParams` (the mapping is described in service/generation/vllm.py), server-sent-event chunks,
error bodies, the smoke request and the base model an external server serves."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from registry.errors import ModelUnavailable
from service.generation.base import SamplingParams

SMOKE_TOKENS = 4
MAX_SERVER_STOPS = 4  # vLLM's OpenAI API refuses more stop strings (400, "at most 4 items")


class VllmRequestError(RuntimeError):
    """vLLM refused a request or broke off its stream."""


def completion_body(prompt_ids: list[int], params: SamplingParams, model: str) -> dict[str, Any]:
    """The streamed /v1/completions request for one generation (mapping: see the module docstring)."""
    body: dict[str, Any] = {
        "model": model,
        "prompt": list(prompt_ids),
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
        "max_tokens": params.max_new_tokens,
        "temperature": max(params.temperature, 0.0),
        "top_p": params.top_p,
        "top_k": -1,
        "min_p": 0.0,
        "repetition_penalty": params.repetition_penalty,
        "stop": list(params.stop[:MAX_SERVER_STOPS]),  # the others: matched by the client (see above)
        "skip_special_tokens": True,
    }
    if params.seed is not None:
        body["seed"] = params.seed
    return body


def sse_data(line: str) -> str | None:
    """The payload of one server-sent-events line (`data: ...`), None for any other line."""
    if not line.startswith("data:"):
        return None
    return line[5:].strip()


@dataclass(frozen=True)
class Chunk:
    text: str = ""
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


def parse_chunk(payload: str) -> Chunk:
    """One streamed completion chunk; raises VllmRequestError for an error the server sent mid-stream."""
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise VllmRequestError(f"vLLM sent an unreadable chunk: {payload[:200]!r}") from exc
    if not isinstance(data, dict):
        raise VllmRequestError(f"vLLM sent an unexpected chunk: {payload[:200]!r}")
    if "error" in data or data.get("object") == "error":
        raise VllmRequestError(f"vLLM: {error_message(payload)}")
    choices = data.get("choices") or [{}]
    usage = data.get("usage") or {}
    return Chunk(
        text=str(choices[0].get("text") or ""),
        finish_reason=choices[0].get("finish_reason"),
        prompt_tokens=usage.get("prompt_tokens"),
        completion_tokens=usage.get("completion_tokens"),
    )


def error_message(text: str) -> str:
    """The message of an OpenAI-style error body (`{"error": {"message": ...}}` or `{"message": ...}`)."""
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    if not isinstance(data, dict):
        return str(data)[:300]
    error = data.get("error", data)
    return str(error.get("message", error) if isinstance(error, dict) else error)[:300]


def smoke_completion(url: str, model: str, prompt_ids: list[int], timeout_s: float = 300.0) -> str:
    """A few greedy tokens of `model` on the server at `url`; raises ModelUnavailable on no answer."""
    import httpx

    body = completion_body(prompt_ids, SamplingParams(max_new_tokens=SMOKE_TOKENS, temperature=0), model)
    body.update(stream=False)
    body.pop("stream_options")
    try:
        response = httpx.post(f"{url}/v1/completions", json=body, timeout=timeout_s)
        data = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ModelUnavailable(f"vLLM failed the smoke prompt for {model}: {exc}") from exc
    if response.status_code != 200:
        raise ModelUnavailable(f"vLLM failed the smoke prompt for {model}: {error_message(response.text)}")
    if not (data.get("usage") or {}).get("completion_tokens"):
        raise ModelUnavailable(f"vLLM answered the smoke prompt for {model} with nothing: {str(data)[:300]}")
    return str(data["choices"][0].get("text", ""))


def base_model_name(url: str) -> str:
    """The base model an external vLLM server serves: the /v1/models entry that is not a LoRA."""
    import httpx

    try:
        models = httpx.get(f"{url}/v1/models", timeout=30).json().get("data") or []
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise ModelUnavailable(f"the vLLM server at {url} does not list its models: {exc}") from exc
    for model in models:
        if not model.get("parent"):
            return str(model["id"])
    raise ModelUnavailable(f"the vLLM server at {url} serves no base model")
