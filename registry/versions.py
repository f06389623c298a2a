"""Model versions the service can serve, and the aliases that point at them.

A version is a folder DATA_DIR/models/versions/<id>/ with a `manifest.json` (base model, optional LoRA
adapter folder, parent, created, status). `v0001` is the base policy itself and is created on first
start. Aliases (`champion`, `candidate`, `canary`) map to version ids in `aliases.json`, replaced
atomically. The model registry (promotion history, gates) builds on this layout.

Version ids and model names come from requests (`"model"` in a chat, the registry's routes): only
names shaped like a version id (`is_version_id`) are looked up on disk, so `../../elsewhere` never
reaches a manifest outside the versions folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.clock import utc_now
from core.files import write_json
from registry.errors import ModelNotFound

ALIASES = ("champion", "candidate", "canary")
VERSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def is_version_id(name: str) -> bool:
    """Whether `name` can be a version folder: letters, digits, `.`, `_`, `-`; no path, no `..`."""
    return VERSION_ID.fullmatch(name) is not None and ".." not in name


@dataclass(frozen=True)
class ModelVersion:
    id: str
    base: str  # HF folder or hub id
    adapter: str | None = None  # LoRA adapter folder, relative to the version folder
    parent: str | None = None
    created: str = ""
    status: str = "ready"

    def adapter_path(self, root: Path) -> Path | None:
        return None if self.adapter is None else root / "versions" / self.id / self.adapter


class ModelDirectory:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def _versions(self) -> Path:
        return self.root / "versions"

    def ensure_base(self, base: str) -> ModelVersion:
        """Make sure `v0001` (the base policy) exists and `champion` points somewhere."""
        first = self._versions / "v0001" / "manifest.json"
        if not first.exists():
            self.add(ModelVersion(id="v0001", base=base, created=utc_now()))
        aliases = self.aliases()
        if "champion" not in aliases:
            self.set_alias("champion", "v0001")
        return self.get("v0001")

    def add(self, version: ModelVersion) -> ModelVersion:
        folder = self._versions / version.id
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / "manifest.json", asdict(version))
        return version

    def versions(self) -> list[ModelVersion]:
        out = []
        for manifest in sorted(self._versions.glob("*/manifest.json")):
            try:
                out.append(ModelVersion(**json.loads(manifest.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a half-created or foreign folder is not a version
        return out

    def get(self, version_id: str) -> ModelVersion:
        if not is_version_id(version_id):
            raise self._not_found(version_id)
        manifest = self._versions / version_id / "manifest.json"
        try:
            return ModelVersion(**json.loads(manifest.read_text()))
        except FileNotFoundError:
            raise self._not_found(version_id) from None
        except (OSError, ValueError, TypeError) as exc:
            raise ModelNotFound(f"model version {version_id!r} has an unreadable manifest: {exc}") from exc

    def aliases(self) -> dict[str, str]:
        path = self.root / "aliases.json"
        try:
            data: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()}

    def set_alias(self, alias: str, version_id: str) -> None:
        self.get(version_id)
        aliases = {**self.aliases(), alias: version_id}
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / "aliases.json", aliases)

    def resolve(self, name: str) -> ModelVersion:
        """A version by alias or id; ModelNotFound (listing the valid names) otherwise."""
        aliases = self.aliases()
        if name in aliases:
            return self.get(aliases[name])
        if is_version_id(name) and (self._versions / name / "manifest.json").exists():
            return self.get(name)
        raise self._not_found(name)

    def _not_found(self, name: str) -> ModelNotFound:
        valid = sorted(self.aliases()) + [v.id for v in self.versions()]
        return ModelNotFound(f"unknown model {name!r}; valid: {', '.join(valid) or 'none yet'}")
