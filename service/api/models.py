"""`GET /v1/models`: the servable model versions and the aliases pointing at them (OpenAI list format)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from service.api.deps import IdentityDep, RuntimeDep

router = APIRouter(tags=["models"])


@router.get("/v1/models")
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
