"""Talking to the service the way employees do: the app in-process (Starlette's TestClient: the
real routes, auth, validation and store; only the socket is skipped), each employee with a bearer
token, answers asked again when a generation failed (a backend restarting, a full queue)."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from simulation.config import SimulationConfig, SimulationError
from simulation.employees import Employee, employees

if TYPE_CHECKING:
    from core.settings import Settings

T = TypeVar("T")
R = TypeVar("R")
log = logging.getLogger(__name__)


def _ok(response: Any) -> dict[str, Any]:
    if response.status_code != 200:
        raise SimulationError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} "
            f"{response.text[:300]}"
        )
    data: dict[str, Any] = response.json()
    return data


RETRIED = (500, 502, 503, 504)  # a generation that failed (a backend restarted) or a full queue


def _generate(
    client: Any, path: str, body: dict[str, Any], headers: dict[str, str], attempts: int = 4
) -> Any:
    """POST a request that generates, again after a failed generation or a full queue (waiting
    Retry-After, else 1, 2, 4 s): a backend that died mid-answer is restarted by the service, and a run
    of an hour should not end on one such answer. Other statuses are returned as they are."""
    for attempt in range(attempts):
        response = client.post(path, json=body, headers=headers)
        if response.status_code not in RETRIED or attempt == attempts - 1:
            return response
        wait = response.headers.get("Retry-After")
        log.warning("%s: %s, asking again (%d/%d)", path, response.status_code, attempt + 2, attempts)
        time.sleep(float(wait) if wait and wait.isdigit() else 2.0**attempt)
    raise AssertionError("unreachable")


def _ask(client: Any, who: Employee, question: str, max_tokens: int, **options: Any) -> dict[str, Any]:
    body = {"messages": [{"role": "user", "content": question}], "max_tokens": max_tokens, **options}
    data = _ok(_generate(client, "/v1/chat/completions", body, who.headers))
    return {"text": data["choices"][0]["message"]["content"], **data["kbloop"]}


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return " ".join(a["text"].split()) == " ".join(b["text"].split())


def _parallel(fn: Callable[[T], R], tasks: Sequence[T], workers: int) -> list[R]:
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(fn, tasks))


@contextlib.contextmanager
def _service(
    settings: Settings, cfg: SimulationConfig, embedder: Any
) -> Iterator[tuple[Any, Settings, list[Employee]]]:
    """The app under `settings.data_dir`, with the simulated employees' tokens: (client, its settings,
    the employees)."""
    from fastapi.testclient import TestClient

    from service.app import create_app

    people = employees(cfg.users, cfg.seed, cfg.noise)
    tokens = settings.data.simulate_tokens
    tokens.parent.mkdir(parents=True, exist_ok=True)
    tokens.write_text(json.dumps({p.token: {"user": p.user, "role": "employee"} for p in people}))
    tokens.chmod(0o600)
    app_settings = settings.model_copy(update={"tokens_file": tokens})
    with TestClient(create_app(app_settings, embedder=embedder)) as client:
        ready = client.get("/readyz")
        if ready.status_code != 200:
            raise SimulationError(f"the service is not ready: {ready.text[:300]}; run `kbloop ingest` first")
        yield client, app_settings, people
