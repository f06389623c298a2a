"""UI security: every handler of an operator tab checks the caller, uploads are read only from Gradio's
upload folder, and document, answer and feedback text is shown escaped end to end."""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from service.api.deps import AppState
from service.errors import Forbidden, NotFound, Unauthorized
from tests.service.conftest import EMPLOYEE, OPERATOR
from ui import access, compare, knowledge, operator
from ui.chat import ChatSession, rate, respond, send_feedback
from ui.errors import shown_to_user
from ui.uploads import TOKEN_COOKIE

OPERATOR_TABS = ("knowledge", "operator", "models")
IMG = '<img src=x onerror="alert(1)">'
SCRIPT = "<script>alert(1)</script>"


def blocks_of(client: TestClient) -> gr.Blocks:
    mount = next(r for r in iter_route_contexts(client.app.routes) if isinstance(r.original_route, Mount))
    blocks: gr.Blocks = mount.original_route.app.get_blocks()
    return blocks


def descendants(block: Any) -> set[int]:
    found = {block._id}
    for child in getattr(block, "children", []):
        found |= descendants(child)
    return found


def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a Gradio handler as Gradio would (plain, coroutine or async generator)."""
    if inspect.isasyncgenfunction(fn):

        async def first() -> Any:
            return await anext(fn(*args))

        return asyncio.run(first())
    result = fn(*args)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def test_every_handler_of_an_operator_tab_refuses_employees_and_the_anonymous(
    make_client: Callable[..., TestClient], tokens_file: Path
) -> None:
    client = make_client(tokens_file=tokens_file)
    blocks = blocks_of(client)
    tabs = [b for b in blocks.blocks.values() if isinstance(b, gr.Tab) and b.id in OPERATOR_TABS]
    assert sorted(t.id for t in tabs) == sorted(OPERATOR_TABS)
    inside = set().union(*(descendants(t) for t in tabs))
    handlers = [f for f in blocks.fns.values() if f.fn is not None and any(t[0] in inside for t in f.targets)]
    assert len(handlers) >= 8  # refresh and add (knowledge), refresh and pick (operator), models' six
    for handler in handlers:
        name = handler.fn.__name__
        assert handler.inputs and handler.inputs[0].elem_id == "kb-token", f"{name} does not get the token"
        rest = [None] * (len(handler.inputs) - 1)
        for token, refusal in ((EMPLOYEE, "not an operator"), ("", "missing bearer token")):
            with pytest.raises(gr.Error, match=refusal):
                call(handler.fn, token, *rest)


def tab_visibility(client: TestClient) -> dict[str, bool]:
    return {b.id: bool(b.visible) for b in blocks_of(client).blocks.values() if isinstance(b, gr.Tab)}


def test_local_mode_shows_every_tab_and_the_local_user_is_an_operator(
    make_client: Callable[..., TestClient],
) -> None:
    client = make_client()  # no tokens, loopback: local single-user mode
    state: AppState = client.app.state.kbloop  # type: ignore[attr-defined]
    assert tab_visibility(client) == dict.fromkeys(("chat", "compare", *OPERATOR_TABS), True)
    token_box = next(
        b for b in blocks_of(client).blocks.values() if getattr(b, "elem_id", None) == "kb-token"
    )
    assert not token_box.visible  # nothing to type
    assert access.operator(state, None).user == "local"  # in-process, no request: the local user
    assert access.operator(state, "", "127.0.0.1:8000").is_operator
    with pytest.raises(Forbidden, match="not an operator"):  # a page asked for under another name
        access.operator(state, "", "evil.example:8000")


def test_a_gradio_event_addressed_to_another_host_is_not_the_local_operator(
    make_client: Callable[..., TestClient],
) -> None:
    """Through Gradio's own API: the operator tab's handler runs for a loopback Host and refuses a
    request that names another host (a DNS-rebinding page), in local mode."""
    client = make_client()
    blocks = blocks_of(client)
    name = next(f.api_name for f in blocks.fns.values() if f.fn is not None and f.fn.__name__ == "on_refresh")

    def run(host: str) -> str:
        event = client.post(f"/ui/gradio_api/call/{name}", json={"data": [""]}, headers={"Host": host})
        assert event.status_code == 200, event.text
        with client.stream(
            "GET", f"/ui/gradio_api/call/{name}/{event.json()['event_id']}", headers={"Host": host}
        ) as stream:
            return "".join(stream.iter_lines())

    assert "event: complete" in run("127.0.0.1:8000")
    refused = run("evil.example:8000")
    assert "event: error" in refused and "not an operator" in refused


def test_with_tokens_the_operator_tabs_show_for_an_operator_token_only(
    make_client: Callable[..., TestClient], tokens_file: Path
) -> None:
    from ui.app import operator_tabs

    client = make_client(tokens_file=tokens_file)  # multi-user mode, even on loopback
    state: AppState = client.app.state.kbloop  # type: ignore[attr-defined]
    assert tab_visibility(client) == {"chat": True, "compare": True, **dict.fromkeys(OPERATOR_TABS, False)}
    for token, shown in ((OPERATOR, True), (EMPLOYEE, False), ("", False), ("not-a-token-at-all", False)):
        assert [t.visible for t in operator_tabs(state, token)] == [shown] * 3, token
    with pytest.raises(Unauthorized):  # no local user any more: a token is needed, wherever from
        access.identify(state, "", "127.0.0.1:8000")


# -- uploads reach the index only from Gradio's upload route ---------------------------------------------


@pytest.fixture
def live(
    make_client: Callable[..., TestClient],
    tokens_file: Path,
    fixture_index: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[TestClient, AppState]:
    import shutil

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio-uploads"))
    index = tmp_path / "index"
    shutil.copytree(fixture_index, index)  # uploads re-index: not the shared fixture index
    client = make_client(tokens_file=tokens_file, index_dir=index)
    return client, client.app.state.kbloop  # type: ignore[attr-defined]


SECRET = "# Server secret\n\nThe root password of the build server is hunter2-kbloop.\n"


def no_progress(*_: Any, **__: Any) -> None:
    return None


def indexed(state: AppState) -> set[str]:
    return set(state.retriever.current().manifest["files"])  # type: ignore[union-attr]


def add_event(client: TestClient, path: str) -> list[str]:
    """The Knowledge tab's "Add" event, called through Gradio's API with `path` as the file."""
    data = [OPERATOR, [{"path": path, "meta": {"_type": "gradio.FileData"}}]]
    event = client.post("/ui/gradio_api/call/on_add", json={"data": data}).json()["event_id"]
    with client.stream("GET", f"/ui/gradio_api/call/on_add/{event}") as stream:
        return list(stream.iter_lines())


def test_only_files_saved_by_the_upload_route_are_added(
    live: tuple[TestClient, AppState], tmp_path: Path
) -> None:
    client, state = live
    outside = tmp_path / "outside" / "secret.md"
    outside.parent.mkdir()
    outside.write_text(SECRET)
    before = indexed(state)
    # Gradio (mounted, never launched) copies any server path an event names into its upload folder:
    # the handler must not take it for an upload
    for crafted in (str(outside), str(tmp_path / "gradio-uploads" / ".." / "outside" / "secret.md")):
        lines = add_event(client, crafted)
        assert "event: error" in lines and "not uploaded through this page" in "".join(lines), lines
    assert indexed(state) == before and not (state.settings.data_dir / "uploads").exists()

    files = {"files": ("Bike rules.md", b"# Bike rules\n\nBicycles go in the basement rack by door B.\n")}
    client.cookies.set(TOKEN_COOKIE, OPERATOR)  # as the page stores the token typed at its top
    uploaded = client.post("/ui/gradio_api/upload", files=files).json()
    lines = add_event(client, uploaded[0])  # the page's own flow: upload, then the event
    assert "event: complete" in lines, lines
    assert "uploads/Bike rules.md" in indexed(state) and "uploads/secret.md" not in indexed(state)


def test_a_symlink_a_folder_or_a_vanished_file_is_not_added(
    live: tuple[TestClient, AppState], tmp_path: Path
) -> None:
    _, state = live
    folder = tmp_path / "gradio-uploads" / "abc"
    folder.mkdir(parents=True)
    outside = tmp_path / "secret.md"
    outside.write_text(SECRET)
    good = folder / "inside.md"
    good.write_text("# Inside\n\nA real upload about the bicycle rack by door B.\n")
    (folder / "link.md").symlink_to(outside)
    (folder / "dir.md").mkdir()
    before = indexed(state)
    for bad in (folder / "link.md", folder / "dir.md", folder / "gone.md"):
        uploaded = [str(good), str(bad)]  # as if the upload route had saved them
        with pytest.raises(gr.Error, match="not uploaded through this page"):
            knowledge.add_documents(state, OPERATOR, uploaded, no_progress, uploaded=uploaded)
    assert indexed(state) == before  # nothing was added, not even the good file of the request
    assert not (state.settings.data_dir / "uploads").exists()


def test_an_upload_replaces_a_symlink_in_the_uploads_folder_instead_of_writing_through_it(
    live: tuple[TestClient, AppState], tmp_path: Path
) -> None:
    _, state = live
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    uploads = state.settings.data_dir / "uploads"
    uploads.mkdir(parents=True)
    (uploads / "notes.md").symlink_to(victim)
    folder = tmp_path / "gradio-uploads" / "h"
    folder.mkdir(parents=True)
    (folder / "notes.md").write_text("# Notes\n\nThe bicycle rack is by door B.\n")
    upload = [str(folder / "notes.md")]
    knowledge.add_documents(state, OPERATOR, upload, no_progress, uploaded=upload)
    assert victim.read_text() == "keep me"
    assert not (uploads / "notes.md").is_symlink() and "door B" in (uploads / "notes.md").read_text()
    assert not [p for p in os.listdir(uploads) if p.startswith(".upload-")]


# -- escaping -------------------------------------------------------------------------------------------


def no_markup(shown: str) -> None:
    low = shown.lower()
    assert "<script" not in low and "<img" not in low, shown


def test_error_toasts_show_user_text_escaped() -> None:
    with pytest.raises(gr.Error) as bad_name:
        knowledge.safe_name(f"{IMG}.exe")
    no_markup(bad_name.value.message)
    with pytest.raises(gr.Error) as not_found, shown_to_user():
        raise NotFound(f"no answer {SCRIPT!r}")
    no_markup(not_found.value.message)
    assert "&lt;script&gt;" in not_found.value.message


HOSTILE_MD = f"""---
title: Bike {IMG} rules
---
# Bike {IMG} rules

## Storage {SCRIPT}

Bicycles are stored in the basement rack next to door B {SCRIPT} {IMG}, free of charge, every day.
"""
HOSTILE_HTML = """<html><head><title>Bike &lt;script&gt;alert(2)&lt;/script&gt; page</title></head><body>
<h1>Bike storage &lt;img src=x onerror=alert(2)&gt;</h1>
<p>The bicycle basement rack by door B holds forty bikes &lt;script&gt;alert(3)&lt;/script&gt;.</p>
</body></html>
"""


@pytest.fixture
def hostile_state(
    make_client: Callable[..., TestClient], tokens_file: Path, tmp_path: Path, embedder: Any
) -> AppState:
    from rag.config import RagConfig
    from rag.ingest import ingest

    corpus = tmp_path / "hostile"
    corpus.mkdir()
    (corpus / f"bikes {SCRIPT}.md".replace("/", "_")).write_text(HOSTILE_MD)
    (corpus / "bikes.html").write_text(HOSTILE_HTML)
    index = tmp_path / "hostile-index"
    ingest([corpus], index, RagConfig(), embedder=embedder)
    client = make_client(tokens_file=tokens_file, index_dir=index, refusal_threshold=0.0)
    app_state: AppState = client.app.state.kbloop  # type: ignore[attr-defined]
    return app_state


def test_document_answer_and_feedback_text_is_escaped_on_every_tab(
    hostile_state: AppState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.generation.base import GenerationEvent, RequestHandle

    state = hostile_state
    runtime = state.runtime
    assert runtime is not None
    engine = runtime.engine(runtime.resolve("champion"))

    def submit(prompt_ids: list[int], params: Any, timeout_s: float | None = None) -> RequestHandle:
        handle = RequestHandle("hostile", asyncio.get_running_loop(), timeout_s)
        for piece in ("Bikes go by door B [1] ", IMG, f" {SCRIPT} [2]"):  # the model's own text
            handle.emit(GenerationEvent(text=piece))
        handle.emit(GenerationEvent(finished=True, finish_reason="stop", completion_tokens=12))
        return handle

    monkeypatch.setattr(engine, "submit", submit)
    question = f"Where is the bicycle basement rack? {IMG}"

    # Chat: every state streamed to the page, then the answer with its sources
    session = ChatSession()

    async def chat() -> list[str]:
        return [
            t.shown for s in [x async for x in respond(state, EMPLOYEE, question, session)] for t in s.turns
        ]

    shown = asyncio.run(chat())
    answered = session.turns[-1]
    assert answered.answer_id is not None and IMG in answered.text
    for piece in shown:
        no_markup(piece)
    final = session.turns[-1].shown
    assert "kb-sources" in final and "&lt;script&gt;" in final  # sources with their escaped passage text

    # Compare: both panes
    _, left, right = asyncio.run(compare.ask(state, EMPLOYEE, question))
    no_markup(left)
    no_markup(right)
    assert "kb-sources" in left

    # Operator: a thumbs down with a hostile comment and correction, inspected next to its passages
    rated = rate(state, EMPLOYEE, session, 1, False)
    send_feedback(state, EMPLOYEE, rated, ["incorrect"], f"bad {SCRIPT}", f"Use the rack {IMG}")
    overview = operator.overview(state, OPERATOR)
    assert overview.down and overview.down[0].comment == f"bad {SCRIPT}"  # kept as typed, shown as text
    for part in operator.inspect(state, OPERATOR, answered.answer_id):
        no_markup(part)

    # Knowledge: the summary line; the table's cells are text (see the test below)
    summary, rows = knowledge.documents(state, OPERATOR)
    no_markup(summary)
    assert any(IMG in str(r[1]) for r in rows)


def test_tables_and_choices_show_their_cells_as_text(client: TestClient) -> None:
    """Table cells and dropdown labels carry raw document titles, questions and comments: Gradio shows
    `str` cells and choices as text, `markdown` and `html` ones as markup."""
    tables = [b for b in blocks_of(client).blocks.values() if isinstance(b, gr.Dataframe)]
    assert len(tables) >= 6
    for table in tables:
        kinds = table.datatype if isinstance(table.datatype, list) else [table.datatype]
        assert not {"markdown", "html"} & set(kinds), (table.elem_id, kinds)
