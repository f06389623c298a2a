"""The import graph runs one way (issue 20): core → rag, feedback → registry → trainer, service → ui,
simulation → cli.

Every import of a kbloop package is parsed from the source, function-level ones included (a lazy
import is still a dependency). An import of a higher layer, or of a sibling package on the same layer,
is an upward edge. `KNOWN` would list edges the code still has (module to package) while they are
being removed; it is empty: a new upward edge fails, and so does a listed one that is gone."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO

LAYERS = {
    "core": 0,
    "rag": 1,
    "feedback": 1,
    "registry": 2,
    "trainer": 3,
    "service": 3,
    "ui": 4,
    "simulation": 4,
    "cli": 5,
}

KNOWN: set[tuple[str, str]] = set()


def imported_packages(path: Path) -> set[str]:
    """The kbloop packages a module imports anywhere in its body."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & set(LAYERS)


def upward_edges() -> set[tuple[str, str]]:
    edges = set()
    for package, rank in LAYERS.items():
        folder = REPO / package
        for path in sorted(folder.rglob("*.py")) if folder.is_dir() else []:
            module = ".".join(path.relative_to(REPO).with_suffix("").parts)
            for target in imported_packages(path):
                if target != package and LAYERS[target] >= rank:
                    edges.add((module, target))
    return edges


def test_imports_run_one_way() -> None:
    edges = upward_edges()
    new = sorted(edges - KNOWN)
    gone = sorted(KNOWN - edges)
    assert not new, f"upward imports (module -> package of a higher or the same layer): {new}"
    assert not gone, f"these edges are gone: remove them from KNOWN in tests/test_layers.py: {gone}"


def test_the_parser_sees_function_level_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from service.app import x\n    import trainer.ppo\n")
    assert imported_packages(module) == {"service", "trainer"}
