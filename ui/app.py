"""The web UI: Gradio Blocks with one tab per task, mounted in the FastAPI app at /ui.

Each tab lives in its own module (ui.chat, ui.compare, ui.knowledge, ui.operator) and calls
service/feedback functions; none holds business logic. Handlers look the app's state up on every
event: the answerer, store and retriever are created in the app's lifespan, after `mount` has run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

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
            visible=not app.auth.allow_anonymous,
        )
        # the upload route is reached before any event sees the token: it reads it from this cookie
        token.change(fn=None, inputs=token, outputs=None, js=STORE_TOKEN_JS)
        with gr.Tabs():
            with gr.Tab("Chat", id="chat"):
                chat.build(app, token)
            with gr.Tab("Compare", id="compare"):
                compare.build(app, token)
            # operators only; without tokens everyone is the local employee, so nobody is one
            operators = not app.auth.allow_anonymous
            with gr.Tab("Knowledge", id="knowledge", visible=operators):
                knowledge.build(app, token, blocks)
            with gr.Tab("Operator", id="operator", visible=operators):
                operator.build(app, token)
            with gr.Tab("Models", id="models", visible=operators):
                models.build(app, token)
    return blocks


def mount(fastapi_app: FastAPI, app: AppState) -> None:
    """Serve the UI at /ui on `fastapi_app`; its upload route keeps only documents (ui.uploads)."""
    fastapi_app.add_middleware(
        UploadTypes,
        path=f"{PATH}/gradio_api/upload",
        suffixes=knowledge.UPLOAD_TYPES,
        check=lambda token: access.operator(app, token),
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
