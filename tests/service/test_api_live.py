"""Against a real uvicorn server on loopback: the official openai client, and client disconnects."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from core.settings import Settings
from tests.service.conftest import PARKING


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(
    request: pytest.FixtureRequest, make_settings: Callable[..., Settings], embedder: Any
) -> Iterator[tuple[str, Any]]:
    import uvicorn

    from ui.server import create_app

    port = free_port()
    overrides = getattr(request, "param", {})  # settings for one test, through indirect parametrisation
    app = create_app(make_settings(port=port, **overrides), embedder=embedder)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 60
    while not srv.started:
        assert time.time() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(20)


def test_official_openai_client(server: tuple[str, Any]) -> None:
    from openai import OpenAI

    base, _ = server
    client = OpenAI(base_url=f"{base}/v1", api_key="anything-works-locally", max_retries=0)
    assert "champion" in {m.id for m in client.models.list().data}
    completion = client.chat.completions.create(
        model="champion", messages=[{"role": "user", "content": PARKING}], max_tokens=6, temperature=0
    )
    assert completion.choices[0].message.role == "assistant"
    assert completion.usage is not None and completion.usage.completion_tokens <= 6
    extra = completion.model_extra or {}
    assert extra["kbloop"]["passages"][0]["source"] == "policies/parking.md"
    pieces, finish = [], None
    stream = client.chat.completions.create(
        model="champion", messages=[{"role": "user", "content": PARKING}], max_tokens=6, stream=True
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish in ("stop", "length")
    from openai import NotFoundError

    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": PARKING}])


# the tiny random model's first sentence would fail the answer checks (and the repetition controls change
# where it stops) before the client leaves: this test is about the disconnect, so it streams the raw model
RAW_MODEL = {"answer_checks": False, "repetition_penalty": 1.0, "no_repeat_ngram_size": 0}


@pytest.mark.parametrize("server", [RAW_MODEL], indirect=True)
def test_client_disconnect_stops_generation(server: tuple[str, Any]) -> None:
    base, app = server
    state = app.state.kbloop
    engine = state.runtime.engine(state.runtime.resolve("champion"))
    slow = engine.model.register_forward_pre_hook(lambda *_: time.sleep(0.02))  # ~50 tokens/s at most
    body = {"messages": [{"role": "user", "content": PARKING}], "max_tokens": 1000, "stream": True}
    try:
        with (
            httpx.Client(timeout=30) as http,
            http.stream("POST", f"{base}/v1/chat/completions", json=body) as r,
        ):
            assert r.status_code == 200
            for n, _line in enumerate(r.iter_lines()):
                if n >= 6:
                    break  # leave mid-stream: the response is closed with the connection
        deadline = time.time() + 20
        while engine.stats().active and time.time() < deadline:
            time.sleep(0.05)
        assert engine.stats().active == 0, "the generation kept running after the client left"
        tokens_after_stop = engine.stats().tokens
        time.sleep(0.3)
        assert engine.stats().tokens == tokens_after_stop
        assert tokens_after_stop < 500
        deadline = time.time() + 10
        while not state.store.count_answers() and time.time() < deadline:
            time.sleep(0.05)
        record = state.store.list_answers()[0]
        assert record.finish_reason == "cancelled"
    finally:
        slow.remove()
