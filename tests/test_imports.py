"""Heavy libraries stay out of package imports and out of `kbloop --help`."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "transformers", "sentence_transformers", "faiss")


def run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_packages_do_not_import_torch() -> None:
    modules = "rag, service, feedback, trainer, ui, rag.search, rag.ingest, cli.rag, cli.app, core.settings"
    out = run(f"import sys, {modules}; print([m for m in {HEAVY!r} if m in sys.modules])")
    assert out == "[]"


def test_cli_help_does_not_import_torch() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom cli.app import app\n"
        "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0 and 'ingest' in r.output\n"
        "r = CliRunner().invoke(app, ['search', '--help']); assert r.exit_code == 0\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert run(code) == "[]"
