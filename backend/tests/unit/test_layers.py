"""Layers point down: only the application (main.py) and api/ itself import from api/."""

from __future__ import annotations

import ast
from pathlib import Path

import todo_api

PACKAGE = Path(todo_api.__file__).parent
ABOVE_API = {PACKAGE / "main.py"}


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_below_the_api_layer_imports_from_it() -> None:
    below = [
        path
        for path in PACKAGE.rglob("*.py")
        if path not in ABOVE_API and (PACKAGE / "api") not in path.parents
    ]
    assert len(below) > 10
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(
            name for name in _imported_modules(path) if name.startswith("todo_api.api")
        )
        for path in below
    }
    assert {path: names for path, names in offenders.items() if names} == {}
