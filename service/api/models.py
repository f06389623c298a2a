"""`GET /v1/models`: the servable model versions and the aliases pointing at them (OpenAI list format)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from registry.gate import GateThresholds
from service.api.deps import AppState, IdentityDep, OperatorDep, RuntimeDep, StateDep
from service.api.responses import errors
from service.runtime import PolicyRuntime

router = APIRouter(tags=["models"])


@router.get("/v1/models", responses=errors(401, 422, 503))
def list_models(runtime: RuntimeDep, _identity: IdentityDep) -> dict[str, Any]:
    aliases = runtime.models.aliases()
    loaded = set(runtime.loaded())
    data: list[dict[str, Any]] = []
    for alias, version_id in sorted(aliases.items()):
        data.append({"id": alias, "object": "model", "created": 0, "owned_by": "kbloop",
                     "kbloop": {"alias_of": version_id, "loaded": version_id in loaded}})  # fmt: skip
    for version in runtime.models.versions():
        data.append(
            {
                "id": version.id,
                "object": "model",
                "created": 0,
                "owned_by": "kbloop",
                "kbloop": {
                    "base": version.base,
                    "adapter": version.adapter,
                    "parent": version.parent,
                    "status": version.status,
                    "aliases": sorted(a for a, v in aliases.items() if v == version.id),
                    "loaded": version.id in loaded,
                },
            }
        )
    return {"object": "list", "data": data}


# -- the registry (operators) -------------------------------------------------------------------------


class PromoteBody(BaseModel):
    reason: str = Field(..., min_length=1, max_length=2000)
    override: bool = False


class RollbackBody(BaseModel):
    reason: str = Field(..., min_length=1, max_length=2000)


class CanaryBody(BaseModel):
    version: str | None = Field(None, max_length=64, description="Version to canary; null stops the canary.")
    share: float = Field(0.1, ge=0, le=1)
    reason: str = Field(..., min_length=1, max_length=2000)


def _registry(state: AppState) -> Any:
    from registry.registry import Registry

    return Registry(state.settings.models_dir, GateThresholds.from_settings(state.settings))


def _event(event: Any) -> dict[str, Any]:
    return dataclasses.asdict(event)


async def _call(state: AppState, body: Any) -> Any:
    """Run a registry operation off the event loop (a registry error is answered with its own HTTP
    status by the app's handler for named errors)."""
    return await asyncio.to_thread(body, _registry(state))


@router.get("/api/models", responses=errors(401, 403, 422))
async def registry_list(state: StateDep, _operator: OperatorDep) -> Any:
    """Every version with its aliases, training report, gate result; the canary share."""

    def body(registry: Any) -> dict[str, Any]:
        return {
            "aliases": registry.aliases(),
            "canary_share": registry.canary_share(),
            "versions": [registry.describe(v.id) for v in registry.models.versions()],
        }

    return await _call(state, body)


@router.get("/api/models/history", responses=errors(401, 403, 422))
async def registry_history(
    state: StateDep, _operator: OperatorDep, alias: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> Any:
    return await _call(state, lambda r: {"events": [_event(e) for e in r.history(alias, limit)]})


@router.get("/api/models/{version_id}", responses=errors(401, 403, 404, 422))
async def registry_show(version_id: str, state: StateDep, _operator: OperatorDep) -> Any:
    return await _call(state, lambda r: r.describe(version_id))


def _smoke(runtime: PolicyRuntime) -> Any:
    """Loading the version's engine is the smoke test; it also leaves the version warm for serving."""

    def smoke(version: Any) -> None:
        runtime.engine(version)  # loads base + adapter (a corrupt adapter raises here)

    return smoke


@router.post("/api/models/{version_id}/promote", responses=errors(401, 403, 404, 409, 413, 422, 503))
async def registry_promote(
    version_id: str, payload: PromoteBody, state: StateDep, operator: OperatorDep, runtime: RuntimeDep
) -> Any:
    """Make a version the champion: gate passed (or `override`, recorded), smoke-tested, audited."""

    def body(registry: Any) -> dict[str, Any]:
        event = registry.promote(
            version_id,
            actor=operator.user,
            reason=payload.reason,
            override=payload.override,
            smoke=_smoke(runtime),
        )
        return _event(event)

    return await _call(state, body)


@router.post("/api/models/rollback", responses=errors(401, 403, 409, 413, 422, 503))
async def registry_rollback(
    payload: RollbackBody, state: StateDep, operator: OperatorDep, runtime: RuntimeDep
) -> Any:
    return await _call(
        state, lambda r: _event(r.rollback(actor=operator.user, reason=payload.reason, smoke=_smoke(runtime)))
    )


@router.post("/api/models/canary", responses=errors(401, 403, 404, 409, 413, 422, 503))
async def registry_canary(
    payload: CanaryBody, state: StateDep, operator: OperatorDep, runtime: RuntimeDep
) -> Any:
    def body(registry: Any) -> dict[str, Any]:
        event = registry.set_canary(
            payload.version, payload.share, actor=operator.user, reason=payload.reason, smoke=_smoke(runtime)
        )
        return _event(event)

    return await _call(state, body)
