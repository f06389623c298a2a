"""Typed FastAPI dependencies: the app's state (created in the lifespan) and the caller's identity.

All are `async def`: they only read memory, and FastAPI would run plain `def` ones in its thread pool,
a thread hop per dependency per request (measured: a third of the feedback endpoints' CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from core.settings import Settings
from feedback.group_commit import GroupCommit
from feedback.store import Store
from rag.search import Retriever
from service.answering import Answerer
from service.auth import Authenticator, Identity, require_operator
from service.errors import NotReady
from service.metrics import Metrics
from service.runtime import PolicyRuntime


@dataclass
class AppState:
    settings: Settings
    metrics: Metrics
    auth: Authenticator
    store: Store | None = None
    writer: GroupCommit | None = None  # the feedback writes to `store`, committed in batches
    retriever: Retriever | None = None
    runtime: PolicyRuntime | None = None
    answerer: Answerer | None = None
    startup_error: str | None = None
    trainer: Any = None  # the background trainer's process (subprocess.Popen), when autostarted
    data_lock: Any = None  # service.datalock.ServerLock: the server's shared lock on the data directory


async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.kbloop
    return state


async def get_answerer(state: Annotated[AppState, Depends(get_state)]) -> Answerer:
    if state.answerer is None:
        raise NotReady(state.startup_error or "the service is starting")
    return state.answerer


async def get_store(state: Annotated[AppState, Depends(get_state)]) -> Store:
    if state.store is None:
        raise NotReady(state.startup_error or "the service is starting")
    return state.store


async def get_runtime(state: Annotated[AppState, Depends(get_state)]) -> PolicyRuntime:
    if state.runtime is None:
        raise NotReady(state.startup_error or "the service is starting")
    return state.runtime


# Documents the bearer token in the OpenAPI schema (`security`); the header itself is read below, as is,
# so that a wrong scheme gets its own message (service.auth).
BEARER = HTTPBearer(
    auto_error=False,
    description="A token from KBLOOP_TOKENS_FILE; none is needed on a loopback server without tokens.",
)


async def get_identity(
    state: Annotated[AppState, Depends(get_state)],
    request: Request,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)],
) -> Identity:
    return state.auth.identify(request.headers.get("authorization"), request.headers.get("host", ""))


async def get_operator(identity: Annotated[Identity, Depends(get_identity)]) -> Identity:
    return require_operator(identity)


StateDep = Annotated[AppState, Depends(get_state)]
AnswererDep = Annotated[Answerer, Depends(get_answerer)]
StoreDep = Annotated[Store, Depends(get_store)]
RuntimeDep = Annotated[PolicyRuntime, Depends(get_runtime)]
IdentityDep = Annotated[Identity, Depends(get_identity)]
OperatorDep = Annotated[Identity, Depends(get_operator)]
