"""Property-based fuzzing of every API operation against the app's own OpenAPI schema (schemathesis).

Each operation gets a few generated requests, valid and invalid by the schema, sent in-process with an
employee's and with an operator's token; every response must be no 5xx, with a documented status,
content type, headers and body (schemathesis' checks). The app runs as served with tokens (the tiny
model, the fixture index, no web UI: Gradio's routes are not part of the API schema), with answers
capped at a few tokens so that chat, streaming and comparisons stay in the run.

schemathesis' own pytest integration (`schemathesis.pytest.from_fixture`) does not run under pytest 9
(it reads a removed attribute of the test node), so each operation is a plain Hypothesis test here.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from core.settings import Settings
from tests.service.conftest import EMPLOYEE, ENGINEER, OPERATOR

# per operation and token; FUZZ_EXAMPLES=200 runs a deeper, randomized search (a few minutes per operation)
DEEP = int(os.environ.get("FUZZ_EXAMPLES", "0"))
EXAMPLES = {GenerationMode.POSITIVE: DEEP or 5, GenerationMode.NEGATIVE: DEEP or 3}
# Every check but `positive_data_acceptance` (a request valid by the schema must get 2xx): the API has
# rules a JSON schema cannot state, answered 422 with what to fix, as documented: a question of only
# spaces, a conversation ending with the assistant, `max_tokens` above the server's limit, a comparison
# with neither `question` nor `messages`, `since`/`until` that are not ISO-8601 dates.
# Unknown query parameters are ignored, as most HTTP APIs (and OpenAI's clients) expect: not generated.
CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {"positive_data_acceptance": {"enabled": False}},
        "generation": {"allow-extra-parameters": False},
    }
)


def operations() -> list[tuple[str, str, bool]]:
    """(method, path, whether it takes any input) of every operation in the app's schema (building the
    app reads no files)."""
    from service.app import create_app

    spec = create_app(Settings()).openapi()
    return [
        (method.upper(), path, bool(op.get("parameters") or op.get("requestBody")))
        for path, ops in spec["paths"].items()
        for method, op in ops.items()
    ]


@pytest.fixture(scope="module")
def fuzz_schema(
    tmp_path_factory: pytest.TempPathFactory, fixture_index: Path, tiny_model_dir: Path, embedder: Any
) -> Iterator[Any]:
    from schemathesis.python.asgi import shutdown_lifespans

    from service.app import create_app

    root = tmp_path_factory.mktemp("fuzz")
    tokens = root / "tokens.json"
    tokens.write_text(
        json.dumps(
            {
                EMPLOYEE: {"user": "erin", "role": "employee"},
                ENGINEER: {"user": "ed", "role": "employee", "groups": ["engineering"]},
                OPERATOR: {"user": "olga", "role": "operator"},
            }
        )
    )
    app_settings = Settings(
        data_dir=root / "var",
        index_dir=fixture_index,
        model=str(tiny_model_dir),
        device="cpu",
        max_tokens_default=4,
        max_tokens_limit=8,
        request_timeout_s=60,
        tokens_file=tokens,
    )
    app = create_app(app_settings, embedder=embedder)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, config=CONFIG)  # starts the lifespan
    assert app.state.kbloop.startup_error is None, app.state.kbloop.startup_error
    yield schema
    shutdown_lifespans()


@pytest.mark.parametrize("token", [EMPLOYEE, OPERATOR], ids=["employee", "operator"])
@pytest.mark.parametrize(("method", "path", "takes_input"), operations())
def test_operation(fuzz_schema: Any, method: str, path: str, takes_input: bool, token: str) -> None:
    operation = fuzz_schema[path][method]
    for mode, examples in EXAMPLES.items():
        if mode is GenerationMode.NEGATIVE and not takes_input:
            continue  # nothing to make invalid

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=not DEEP,  # the same examples on every run, unless searching deeper
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

        fuzz()


# -- what the fuzzing found, as plain regression tests ---------------------------------------------------


def test_the_schema_has_no_dangling_references(client: Any) -> None:
    """A write endpoint's body schema once carried pydantic's `#/$defs/...` references, which point at
    nothing in an OpenAPI document (schemathesis then sent no body at all)."""
    text = json.dumps(client.app.openapi())
    assert "$defs" not in text
    refs = set(re.findall(r'"\$ref": "([^"]+)"', text))
    components = client.app.openapi()["components"]["schemas"]
    assert all(ref.startswith("#/components/schemas/") and ref.split("/")[-1] in components for ref in refs)


def test_a_body_that_is_not_utf8_is_a_422_like_bad_json(client: Any) -> None:
    """FastAPI answers an unreadable body with a bare 400; the API answers 422 as for malformed JSON."""
    for path in ("/api/compare/x/choice", "/api/compare", "/v1/chat/completions", "/api/answers/x/vote"):
        response = client.post(path, content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
        assert response.status_code == 422, (path, response.text)
        assert response.json()["error"]["code"] == "invalid_request"


def test_a_query_parameter_given_twice_is_refused(client: Any) -> None:
    """`?model_version=a&model_version=b` was answered for the last value only."""
    response = client.get("/api/stats?model_version=v0001&model_version=v0002")
    assert response.status_code == 422 and "model_version" in response.json()["error"]["message"]
    assert client.get("/v1/models?a=1&b=2").status_code == 200


def test_compare_messages_must_be_chat_messages(client: Any) -> None:
    """`messages` was any list of string dicts: one without a `role` crashed the answerer (500)."""
    for messages in ([{"text": "hi"}], [{"role": "robot", "content": "hi"}], [{"role": "user"}]):
        response = client.post("/api/compare", json={"messages": messages})
        assert response.status_code == 422, (messages, response.text)
        assert response.json()["error"]["code"] == "invalid_request"


def test_a_huge_offset_is_a_422_not_a_crash(make_client: Any, tokens_file: Path) -> None:
    """`?offset=` had no upper bound: past SQLite's integers the store raised OverflowError (500)."""
    from feedback.errors import InvalidFilter

    client = make_client(tokens_file=tokens_file)
    operator = {"Authorization": f"Bearer {OPERATOR}"}
    assert client.get(f"/api/answers?offset={2**63}", headers=operator).status_code == 422
    last = client.get(f"/api/answers?offset={2**63 - 1}", headers=operator)
    assert last.status_code == 200 and last.json()["answers"] == []
    with pytest.raises(InvalidFilter):
        client.app.state.kbloop.store.list_answers(offset=2**63)
