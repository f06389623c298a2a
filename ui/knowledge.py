"""The Knowledge tab: which documents the assistant answers from, and adding more. Operators only.

Uploaded files are saved under DATA_DIR/uploads and indexed together with the folders the current
index was built from (its manifest's `roots`): rag.ingest treats the paths it is given as the whole
corpus. Nothing is re-embedded that did not change, and the retriever picks the new version up on its
next query.

The paths an event hands to `add_documents` come from the client, and Gradio, mounted in another app,
does not check them (its check runs only after `launch()`): it copies any server file, or downloads
any URL, it is named into its cache. So only the files its upload route saved are read (the Blocks'
`upload_file_set`), and only regular files, so an event crafted through Gradio's API cannot publish a
server file as a document.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr

from rag.config import RagConfig
from rag.errors import IndexNotFound
from rag.ingest import IngestReport, ingest
from ui import access
from ui.errors import shown_to_user, toast
from ui.render import code, markdown_text

if TYPE_CHECKING:
    from service.api.deps import AppState

DOCUMENT_COLUMNS = ["source", "title", "access groups", "chunks"]
UPLOAD_TYPES = [".md", ".txt", ".html", ".pdf"]
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")

ProgressFn = Callable[..., Any]  # gr.Progress: progress((done, total), desc=...)
PROGRESS = gr.Progress()  # a handler's default: Gradio passes the event's own bar in its place


def uploads_dir(app: AppState) -> Path:
    return app.settings.data.uploads


def max_upload_bytes(app: AppState) -> int:
    """The largest file to accept: what ingest reads (max_file_mb; the app lets uploads through its
    body limit up to that, see service.app.BodyLimit)."""
    return int(app.settings.max_file_mb * 1024 * 1024)


def size_text(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


def documents(app: AppState, token: str | None) -> tuple[str, list[list[Any]]]:
    """A summary line (Markdown) and one row per indexed document."""
    access.operator(app, token)
    try:
        version = access.retriever(app).current()
    except IndexNotFound:
        return "No index yet: upload documents to create one.", []
    files: dict[str, dict[str, Any]] = version.manifest.get("files", {})
    rows = [
        [source, entry.get("title", ""), ", ".join(entry.get("groups") or []) or "everyone",
         len(entry.get("chunks", []))]
        for source, entry in sorted(files.items())
    ]  # fmt: skip
    summary = (
        f"Index version {code(version.version)}, built "
        f"{markdown_text(str(version.manifest.get('created', '?')))}: {len(rows)} documents, "
        f"{len(version.chunks)} passages."
    )
    skipped = version.manifest.get("skipped") or []
    if skipped:
        summary += " Skipped: " + "; ".join(
            markdown_text(f"{s.get('source')} ({s.get('reason')})") for s in skipped[:10]
        )
    return summary, rows


def safe_name(name: str) -> str:
    """A file name that stays inside the uploads folder and says what it was."""
    base = Path(name.replace("\\", "/")).name
    cleaned = _UNSAFE_NAME.sub("_", base).strip(" .")
    if not cleaned or Path(cleaned).suffix.lower() not in UPLOAD_TYPES:
        raise toast(f"{name!r}: only {', '.join(UPLOAD_TYPES)} files can be added.")
    return cleaned


def uploaded_file(path: str, uploaded: Collection[str]) -> int:
    """The size of `path`, a regular file among the `uploaded` ones; gr.Error for anything else (a file
    elsewhere, a symlink, a folder, a file gone)."""
    refused = toast(f"{Path(path).name!r} was not uploaded through this page; upload it again.")
    if path not in uploaded:
        raise refused
    try:
        info = os.lstat(path)
    except (OSError, ValueError):  # gone, or a NUL byte
        raise refused from None
    if not stat.S_ISREG(info.st_mode):
        raise refused
    return info.st_size


def _copy_into(path: Path, folder: Path, name: str) -> None:
    """Copy `path` to `folder/name` through a temporary file renamed over it: whatever was at that name
    (a symlink included) is replaced, never written through."""
    fd, partial = tempfile.mkstemp(dir=folder, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out, path.open("rb") as source:
            shutil.copyfileobj(source, out)
        os.replace(partial, folder / name)
    finally:
        Path(partial).unlink(missing_ok=True)


class _Bar:
    """rag.ingest's progress protocol drawn on a Gradio progress bar."""

    def __init__(self, progress: ProgressFn) -> None:
        self.progress, self.name, self.total, self.done = progress, "", 0, 0

    def stage(self, name: str, total: int) -> None:
        self.name, self.total, self.done = name, total, 0
        self.progress((0, total), desc=name)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self.progress((self.done, self.total), desc=self.name)


@dataclass(frozen=True)
class Added:
    saved: list[str]
    report: IngestReport

    def markdown(self) -> str:
        r = self.report
        lines = [
            f"Added {', '.join(code(s) for s in self.saved)}.",
            f"Index version {code(r.version)}"
            + (" published" if r.published else " unchanged (the files were already indexed)")
            + f": {r.files_indexed} documents, {r.chunks} passages, {r.chunks_embedded} embedded now, "
            f"{r.seconds:.1f} s.",
        ]
        lines += [f"- skipped {markdown_text(s)}: {markdown_text(why)}" for s, why in r.skipped]
        lines += [f"- warning on {markdown_text(s)}: {markdown_text(w)}" for s, w in r.warnings]
        return "\n".join(lines)


def add_documents(
    app: AppState,
    token: str | None,
    files: Sequence[str],
    progress: ProgressFn,
    *,
    uploaded: Collection[str],
) -> Added:
    """Save the uploaded files (temporary paths, named as uploaded, each among the `uploaded` paths
    Gradio's upload route saved) and re-index."""
    access.operator(app, token)
    retriever = access.retriever(app)
    if not files:
        raise gr.Error("Choose one or more files first.")
    limit = max_upload_bytes(app)
    staged = []
    for file in files:
        path = Path(file)
        name = safe_name(path.name)
        if uploaded_file(file, uploaded) > limit:
            raise toast(f"{name} is larger than {size_text(limit)}, the most one upload may be.")
        staged.append((path, name))
    target = uploads_dir(app)
    target.mkdir(parents=True, exist_ok=True)
    for path, name in staged:
        _copy_into(path, target, name)

    index_dir = app.settings.resolved_index_dir
    try:
        roots = [Path(r) for r in retriever.current().manifest.get("roots", [])]
    except IndexNotFound:
        roots = []
    if target.resolve() not in {r.resolve() for r in roots}:
        roots.append(target)
    report = ingest(
        roots,
        index_dir,
        RagConfig.from_settings(app.settings),
        embedder=retriever.embedder,
        progress=_Bar(progress),
    )
    return Added([name for _, name in staged], report)


def build(app: AppState, token: gr.Textbox, blocks: gr.Blocks) -> gr.Button:
    """The Knowledge tab's components and events (inside a `gr.Tab` of `blocks`); returns its refresh
    button."""
    cap = size_text(max_upload_bytes(app))
    gr.Markdown(f"Operators only. Add Markdown, text, HTML or PDF files (up to {cap} each).")
    with gr.Row():
        upload = gr.File(
            label="Documents to add",
            file_count="multiple",
            file_types=UPLOAD_TYPES,
            type="filepath",
            elem_id="kb-upload",
        )
    add = gr.Button("Add to the knowledge base", variant="primary", elem_id="kb-add")
    result = gr.Markdown(elem_id="kb-add-result")
    refresh = gr.Button("Refresh the list", elem_id="kb-documents-refresh")
    summary = gr.Markdown(elem_id="kb-index-summary")
    table = gr.Dataframe(headers=DOCUMENT_COLUMNS, interactive=False, wrap=True, elem_id="kb-documents")

    def on_refresh(token_value: str) -> tuple[str, list[list[Any]]]:
        with shown_to_user():
            return documents(app, token_value)

    def on_add(
        token_value: str, paths: list[str] | None, progress: gr.Progress = PROGRESS
    ) -> tuple[Any, ...]:
        with shown_to_user():
            added = add_documents(app, token_value, paths or [], progress, uploaded=blocks.upload_file_set)
            text, rows = documents(app, token_value)
        return added.markdown(), None, text, rows

    refresh.click(on_refresh, [token], [summary, table])
    add.click(on_add, [token, upload], [result, upload, summary, table])
    return refresh
