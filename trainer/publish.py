"""Register a finished policy run as a new model version and point the `candidate` alias at it.

The adapter is copied into a hidden folder beside the versions and renamed into place, and the
manifest (which makes it a version) is written last, so a crash leaves no half-made version. A
candidate is never served by this: promotion is an operator decision (the registry's job).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from core.clock import utc_now
from core.files import write_json
from registry.versions import ModelDirectory, ModelVersion


def next_version_id(models: ModelDirectory) -> str:
    numbers = [int(v.id[1:]) for v in models.versions() if v.id[1:].isdigit()]
    folders = [int(p.name[1:]) for p in (models.root / "versions").glob("v*") if p.name[1:].isdigit()]
    return f"v{max([0, *numbers, *folders]) + 1:04d}"


def publish_candidate(
    models: ModelDirectory, *, base: str, adapter: Path, parent: str, run_dir: Path, report: dict[str, Any]
) -> ModelVersion:
    version_id = next_version_id(models)
    folder = models.root / "versions" / version_id
    staging = models.root / "versions" / f".{version_id}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(adapter, staging / "adapter")
    write_json(staging / "training.json", {"run": str(run_dir), "report": report, "created": utc_now()})
    staging.rename(folder)
    version = ModelVersion(
        id=version_id, base=base, adapter="adapter", parent=parent, created=utc_now(), status="candidate"
    )
    models.add(version)
    from registry.registry import Registry

    Registry(models.root).set_candidate(version_id, actor="trainer", reason=f"trained by {run_dir.name}")
    return version
