"""The web UI: Gradio Blocks with one tab per task, mounted in the FastAPI app at /ui.

Each tab lives in its own module (ui.chat, ui.compare, ui.knowledge, ui.operator) and calls
service/feedback functions; none holds business logic. Handlers look the app's state up on every
event: the answerer, store and retriever are created in the app's lifespan, after `mount` has run.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import gradio as gr

from service.errors import ServiceError
from ui import access, chat, compare, knowledge, models, operator
from ui.uploads import TOKEN_COOKIE, UploadTypes

if TYPE_CHECKING:
    from fastapi import FastAPI

    from service.api.deps import AppState

PATH = "/ui"
CSS = """
.kb-sources { margin-top: 0.5em; font-size: 0.9em; }
.kb-sources ol { margin: 0.25em 0 0 1.25em; padding: 0; }
.kb-sources summary { cursor: pointer; }
.kb-sources blockquote { margin: 0.25em 0 0.5em 0; white-space: normal; opacity: 0.85; }
.kb-source-path { font-size: 0.85em; }
.kb-extractive { margin: 0.5em 0 0 0; font-size: 0.9em; font-style: italic; opacity: 0.85; }
"""

# the page keeps the typed token in a same-site cookie scoped to the UI, for the upload route (ui.uploads)
STORE_TOKEN_JS = (
    f"(token) => {{ document.cookie = '{TOKEN_COOKIE}=' + encodeURIComponent(token || '') + "
    f"'; path={PATH}; SameSite=Strict' + (location.protocol === 'https:' ? '; Secure' : ''); return []; }}"
)


def build(app: AppState) -> gr.Blocks:
    with gr.Blocks(title="kbloop", analytics_enabled=False) as blocks:
        gr.Markdown("## kbloop: ask the company knowledge base")
        token = gr.Textbox(
            label="Access token",
            type="password",
            placeholder="Paste the access token you were given",
            elem_id="kb-token",
            visible=not app.auth.local_mode,
        )
        # the upload route is reached before any event sees the token: it reads it from this cookie
        token.change(fn=None, inputs=token, outputs=None, js=STORE_TOKEN_JS)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat.build(app, token, blocks)
            with gr.Tab("Compare", id="compare"):
                compare.build(app, token)
            # operators' tabs: shown in local single-user mode, where the local user is the operator
            # (service.auth); with tokens, once an operator's token is typed. Hiding a tab protects
            # nothing: every handler checks its caller again.
            local = app.auth.local_mode
            with gr.Tab("Knowledge", id="knowledge", visible=local) as knowledge_tab:
                knowledge.build(app, token, blocks)
            with gr.Tab("Operator", id="operator", visible=local) as operator_tab:
                operator.build(app, token)
            with gr.Tab("Models", id="models", visible=local) as models_tab:
                models.build(app, token)
        if not local:
            token.change(
                partial(operator_tabs, app), token, [knowledge_tab, operator_tab, models_tab], queue=False
            )
    return blocks


def operator_tabs(app: AppState, token: str | None) -> tuple[Any, ...]:
    """The operators' tabs, shown for an operator's token and hidden for any other (or none)."""
    try:
        shown = access.identify(app, token).is_operator
    except ServiceError:  # no token, or an unknown one: nothing to show yet
        shown = False
    return tuple(gr.Tab(visible=shown) for _ in range(3))


def mount(fastapi_app: FastAPI, app: AppState) -> None:
    """Serve the UI at /ui on `fastapi_app`; its upload route keeps only documents (ui.uploads)."""
    fastapi_app.add_middleware(
        UploadTypes,
        path=f"{PATH}/gradio_api/upload",
        suffixes=knowledge.UPLOAD_TYPES,
        check=lambda token, host: access.operator(app, token, host),
    )
    gr.mount_gradio_app(
        fastapi_app,
        build(app),
        path=PATH,
        footer_links=[],
        ssr_mode=False,
        css=CSS,
        max_file_size=knowledge.max_upload_bytes(app),
    )
