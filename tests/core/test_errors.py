"""core.errors: every named error says once how the API answers it."""

from __future__ import annotations

from core.errors import KbloopError, response_for
from feedback.errors import AnswerNotFound, InvalidRecord, SchemaTooNew, StoreBusy, StoreFull
from rag.errors import IndexNotFound, InvalidQuery, RagError
from registry.errors import GateFailed
from service.errors import QueueFull, Unauthorized


def test_each_family_answers_with_its_status_and_retry_after() -> None:
    cases = [
        (AnswerNotFound("no answer a1"), 404, "answer_not_found", {}),
        (InvalidRecord("bad"), 422, "invalid_record", {}),
        (SchemaTooNew("newer"), 500, "schema_too_new", {}),
        (StoreBusy("busy"), 503, "store_busy", {"Retry-After": "1"}),
        (StoreFull("full"), 507, "store_full", {"Retry-After": "60"}),
        (InvalidQuery("empty"), 422, "invalid_query", {}),
        (RagError("broken"), 503, "index_corrupt", {}),
        (GateFailed("gate"), 409, "gate_failed", {}),
        (QueueFull("full", retry_after=2), 503, "queue_full", {"Retry-After": "2"}),
        (Unauthorized("who"), 401, "unauthorized", {"WWW-Authenticate": "Bearer"}),
    ]
    for exc, status, code, headers in cases:
        assert isinstance(exc, KbloopError)
        got_status, body, got_headers = response_for(exc)
        assert (got_status, body["error"]["code"], got_headers) == (status, code, headers), type(exc)
        assert body["error"]["message"] == exc.message


def test_a_hint_is_added_for_http_callers_only() -> None:
    exc = IndexNotFound("no index at var/index")
    status, body, headers = response_for(exc)
    assert status == 503 and headers == {"Retry-After": "30"}
    assert body["error"]["message"] == "no index at var/index; run `kbloop ingest` first"
    assert exc.message == "no index at var/index" and str(exc) == "no index at var/index"
