"""What Gradio's upload route (/ui/gradio_api/upload) keeps: only the document types the Knowledge tab adds.

Gradio saves whatever is posted there, before any event (and so before the access token) is seen: the
page uploads a file as soon as it is picked. Gradio already reduces each name to a base name without
path separators, NUL or control characters, and caps each file at `max_file_size`; the app caps the
request (service.app.BodyLimit). This middleware lets Gradio save the request's files, then, when any
of them is not a document type, deletes them all and answers 415, so the upload folder never keeps
anything else (Gradio would serve it back to whoever knows its path).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class UploadTypes:
    """ASGI middleware: 415 for a POST to `path` that saved a file whose suffix is not in `suffixes`."""

    def __init__(self, app: ASGIApp, path: str, suffixes: Collection[str]) -> None:
        self.app = app
        self.path = path
        self.suffixes = {s.lower() for s in suffixes}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []

        async def hold(message: Message) -> None:
            messages.append(message)

        # the answer is held until the route is done, its background copies included (Starlette runs
        # a response's background tasks before the app returns); asked for uncompressed, to be read
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
        await self.app({**scope, "headers": headers}, receive, hold)
        saved = _saved_paths(messages)
        refused = sorted({p.name for p in saved if p.suffix.lower() not in self.suffixes})
        if not refused:
            for message in messages:
                await send(message)
            return
        for path in saved:
            path.unlink(missing_ok=True)
        allowed = ", ".join(sorted(self.suffixes))
        body = {
            "error": {
                "code": "unsupported_file_type",
                "message": f"{', '.join(refused)}: only {allowed} files can be uploaded",
            }
        }
        await JSONResponse(body, status_code=415)(scope, receive, send)


def _saved_paths(messages: list[Message]) -> list[Path]:
    """The files a successful upload answered with (a JSON list of paths); none for an error."""
    start = next((m for m in messages if m["type"] == "http.response.start"), None)
    if start is None or start["status"] != 200:
        return []
    body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    paths = json.loads(body)  # anything but a list of paths: Gradio changed; fail rather than pass it
    if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
        raise ValueError(f"unexpected answer from Gradio's upload route: {body[:200]!r}")
    return [Path(p) for p in paths]
