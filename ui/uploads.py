"""Who may post to Gradio's upload route (/ui/gradio_api/upload), and what it keeps: an operator's
documents of the types the Knowledge tab adds.

Gradio saves whatever is posted there before any event runs, and so before an event's access-token
check: the page uploads a file as soon as it is picked. Left open, anyone who can reach the server could
fill its disk. The page therefore copies the access token typed at its top into a cookie
(`TOKEN_COOKIE`, path /ui, SameSite=Strict; see ui.app), and this middleware answers 401 (no or an
unknown token) or 403 (not an operator's) before Gradio reads the request's body. In local single-user
mode (no tokens, loopback bind: service.auth) the local user is the operator and needs no cookie, but
only for a request addressed to a loopback host (`Host: 127.0.0.1:...`); any other is refused.

Gradio already reduces each name to a base name without path separators, NUL or control characters,
and caps each file at `max_file_size`; the app caps the request (service.app.BodyLimit). The middleware
lets Gradio save an operator's files, then, when any of them is not a document type, deletes them all
and answers 415, so the upload folder never keeps anything else (Gradio would serve it back to whoever
knows its path).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import unquote

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "kbloop_ui_token"


def cookie_token(scope: Scope) -> str | None:
    """The access token the page stored in `TOKEN_COOKIE`, or None."""
    for key, value in scope.get("headers", []):
        if key.lower() != b"cookie":
            continue
        try:
            cookie = SimpleCookie(value.decode("latin-1"))
        except CookieError:
            return None
        if TOKEN_COOKIE in cookie:
            return unquote(cookie[TOKEN_COOKIE].value).strip() or None
    return None


def host_header(scope: Scope) -> str:
    """The request's `Host` header ("" when it has none)."""
    for key, value in scope.get("headers", []):
        if key.lower() == b"host":
            return str(value.decode("latin-1"))
    return ""


def _error(status: int, code: str, message: str) -> JSONResponse:
    from core.errors import error_body  # the API's error shape

    return JSONResponse(error_body(code, message), status_code=status)


class UploadTypes:
    """ASGI middleware for POSTs to `path`: the error `check(token, host)` raises for the cookie's
    token and the request's Host header (a service.errors.ServiceError: Unauthorized, Forbidden), else
    415 when a saved file's suffix is not in `suffixes`."""

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        suffixes: Collection[str],
        check: Callable[[str | None, str], object],
    ) -> None:
        self.app = app
        self.path = path
        self.suffixes = {s.lower() for s in suffixes}
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") != self.path:
            await self.app(scope, receive, send)
            return
        from service.errors import ServiceError

        try:
            self.check(cookie_token(scope), host_header(scope))
        except ServiceError as exc:  # Unauthorized (401) or Forbidden (403); the body is never read
            why = f"uploads need an operator's access token: {exc.message}"
            await _error(exc.status, exc.code.value, why)(scope, receive, send)
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
        why = f"{', '.join(refused)}: only {allowed} files can be uploaded"
        await _error(415, "unsupported_file_type", why)(scope, receive, send)


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
