"""Who is asking: bearer tokens mapped to a user, a role and access groups.

Tokens come from a YAML or JSON file (KBLOOP_TOKENS_FILE) shaped as
    {"<token>": {"user": "alice", "role": "employee", "groups": ["engineering"]}, ...}
With no tokens configured and the server bound to a loopback address, every request acts as the local
anonymous employee (so `make run` works without setup); bound elsewhere, a request without a valid
token gets 401. Tokens are compared in constant time.
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


LOCAL_ANONYMOUS = Identity(user="local", role="employee", groups=())


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
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Authenticator:
    def __init__(self, tokens: dict[str, Identity], allow_anonymous: bool) -> None:
        self._tokens = [(t.encode(), ident) for t, ident in tokens.items()]
        self.allow_anonymous = allow_anonymous and not tokens

    def identify(self, authorization: str | None) -> Identity:
        """The caller's identity from an `Authorization: Bearer ...` header; Unauthorized otherwise.

        In local anonymous mode any header is ignored: OpenAI clients always send some API key."""
        if self.allow_anonymous:
            return LOCAL_ANONYMOUS
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
