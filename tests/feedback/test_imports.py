"""`import feedback` stays cheap: sqlite-utils (and the pandas/numpy it pulls in) load only when a
Store opens a database, torch never."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

HEAVY = ("sqlite_utils", "pandas", "numpy", "torch")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [m for m in done.stdout.strip().split(",") if m]


def test_importing_the_package_loads_nothing_heavy() -> None:
    code = (
        "import feedback, feedback.store, feedback.migrations, feedback.stats, feedback.ranking, "
        "feedback.export, feedback.export_csv\nfrom feedback import Store, AnswerRecord, Vote, Comparison"
    )
    assert _loaded_after(code) == []


def test_opening_a_store_loads_sqlite_utils_but_not_torch(tmp_path: Path) -> None:
    loaded = _loaded_after(
        f"from feedback import Store\nStore(__import__('pathlib').Path({str(tmp_path / 'f.db')!r}))"
    )
    assert "sqlite_utils" in loaded and "torch" not in loaded
