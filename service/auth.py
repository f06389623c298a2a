"""Who is asking: bearer tokens mapped to a user, a role and access groups.

Tokens come from a YAML or JSON file (KBLOOP_TOKENS_FILE) shaped as
    {"<token>": {"user": "alice", "role": "employee", "groups": ["engineering"]}, ...}
Two modes:
- **local single-user mode**: no tokens configured and the server bound to a loopback address (what
  `make run` gives). Whoever reaches the server is the person at this machine, as with a local notebook
  server: every request is the local user, an operator, and any Authorization header is ignored (OpenAI
  clients always send some key). Only requests addressed to a loopback host (`Host: 127.0.0.1:8000`,
  `localhost`, `[::1]`) get the operator role; one naming another host (a web page that re-pointed its
  own domain at 127.0.0.1, "DNS rebinding", or a proxy in front) is the local *employee*: it may ask and
  rate, never change models, documents or read everybody's feedback.
- **multi-user mode**: a tokens file is configured. Each request needs a valid bearer token, and the
  token's entry says who it is, its role and its groups.
Bound to any other address without tokens, nobody is anonymous: every request without a valid token
gets 401 (and, with no tokens at all, every one does). Tokens are compared in constant time.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from service.errors import Forbidden, Unauthorized

Role = Literal["employee", "operator"]
ROLES: tuple[Role, ...] = ("employee", "operator")


@dataclass(frozen=True)
class Identity:
    user: str
    role: Role = "employee"
    groups: tuple[str, ...] = field(default_factory=tuple)

    @property
    def is_operator(self) -> bool:
        return self.role == "operator"

    def may_access(self, owner: str) -> bool:
        """Whether this caller may see and rate what `owner` asked: its author, or an operator."""
        return owner == self.user or self.is_operator


LOCAL_OPERATOR = Identity(user="local", role="operator", groups=())  # local mode, asked at a loopback host
LOCAL_EMPLOYEE = Identity(user="local", role="employee", groups=())  # local mode, asked at any other host
LOCAL_ANONYMOUS = LOCAL_EMPLOYEE  # the name older callers use


class TokenFileError(ValueError):
    pass


def load_tokens(path: Path) -> dict[str, Identity]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TokenFileError(f"cannot read the tokens file {path}: {exc}") from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except ValueError as exc:  # yaml.YAMLError subclasses Exception; wrap both below
        raise TokenFileError(f"the tokens file {path} is not valid: {exc}") from exc
    except Exception as exc:
        raise TokenFileError(f"the tokens file {path} is not valid: {exc}") from exc
    if not isinstance(data, dict):
        raise TokenFileError(f"the tokens file {path} must map tokens to {{user, role, groups}}")
    tokens: dict[str, Identity] = {}
    for token, entry in data.items():
        if not isinstance(entry, dict) or not entry.get("user"):
            raise TokenFileError(f"{path}: every token needs at least a `user`")
        role = entry.get("role", "employee")
        if role not in ROLES:
            raise TokenFileError(f"{path}: role {role!r} for {entry['user']!r} is not one of {ROLES}")
        if len(str(token)) < 16:
            raise TokenFileError(f"{path}: the token of {entry['user']!r} is shorter than 16 characters")
        groups = entry.get("groups") or []
        tokens[str(token)] = Identity(str(entry["user"]), role, tuple(str(g).lower() for g in groups))
    return tokens


def is_loopback(host: str) -> bool:
    """Whether a bind address (or a host name without port) is this machine's loopback."""
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def addressed_to_loopback(host_header: str | None) -> bool:
    """Whether a request's `Host` header (`127.0.0.1:8000`, `[::1]:8000`, `localhost`) names this
    machine's loopback; an absent header (a call from inside the process) counts as local."""
    if host_header is None:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6 address]:port
        host = host[1 : host.find("]")] if "]" in host else ""
        return bool(host) and is_loopback(host)
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return host == "localhost" or host.endswith(".localhost") or (bool(host) and is_loopback(host))


class Authenticator:
    """`allow_anonymous`: the server is bound to a loopback address; with no `tokens` too, this is
    local single-user mode (`local_mode`)."""

    def __init__(self, tokens: dict[str, Identity], allow_anonymous: bool) -> None:
        self._tokens = [(t.encode(), ident) for t, ident in tokens.items()]
        self.allow_anonymous = allow_anonymous and not tokens

    @property
    def local_mode(self) -> bool:
        return self.allow_anonymous

    def identify(self, authorization: str | None, host: str | None = None) -> Identity:
        """The caller's identity from an `Authorization: Bearer ...` header; Unauthorized otherwise.

        In local mode any header is ignored (OpenAI clients always send some API key), and the caller
        is the local operator when the request's `Host` header (`host`; None: not an HTTP request)
        names a loopback address, the local employee otherwise."""
        if self.allow_anonymous:
            return LOCAL_OPERATOR if addressed_to_loopback(host) else LOCAL_EMPLOYEE
        if not authorization:
            raise Unauthorized("missing bearer token: send `Authorization: Bearer <token>`")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be `Bearer <token>`")
        given = token.strip().encode()
        found: Identity | None = None
        for known, ident in self._tokens:  # every token is compared, in constant time each
            if hmac.compare_digest(given, known):
                found = ident
        if found is None:
            raise Unauthorized("unknown bearer token")
        return found


def require_operator(identity: Identity) -> Identity:
    if not identity.is_operator:
        raise Forbidden(f"{identity.user} is not an operator")
    return identity
