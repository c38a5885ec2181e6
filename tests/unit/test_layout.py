"""The shape of the package: the core is pure and the folders follow the pipeline."""

from __future__ import annotations

import ast
from pathlib import Path

import riskwatch

PACKAGE = Path(riskwatch.__file__).parent
# What the core may import from riskwatch: itself and the exception tree.
CORE_MAY_IMPORT = ("riskwatch.core", "riskwatch.errors")
# Modules of the standard library that do I/O, wait, or read the clock or the environment.
CORE_MUST_NOT_IMPORT = {"asyncio", "os", "socket", "subprocess", "threading", "time", "httpx",
                        "sqlite3", "psycopg", "structlog", "logging", "random", "uuid"}


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every module ``path`` imports, with its line (``from x import y`` counts as ``x``)."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.lineno, f"{node.module}.{alias.name}")
                         if node.module == "riskwatch" else (node.lineno, node.module)
                         for alias in node.names)
    return found


def test_the_core_imports_nothing_from_the_shell() -> None:
    """core/ imports only core/ and errors from riskwatch, and no I/O or clock module."""
    wrong = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            if module.startswith("riskwatch") and not module.startswith(CORE_MAY_IMPORT):
                wrong.append(f"{path.name}:{line} imports {module}")
            elif top in CORE_MUST_NOT_IMPORT:
                wrong.append(f"{path.name}:{line} imports {module} (I/O, time or randomness)")
    assert wrong == []


def test_the_import_check_sees_a_forbidden_import(tmp_path: Path) -> None:
    """The check above is not blind: a core-like file importing the shell is caught."""
    bad = tmp_path / "bad.py"
    bad.write_text("import time\nfrom riskwatch.store import Store\nfrom riskwatch import core\n")
    modules = [module for _, module in _imports(bad)]
    assert modules == ["time", "riskwatch.store", "riskwatch.core"]


def test_the_top_level_folders_are_the_pipeline_stages() -> None:
    """A newcomer sees the stages as folders, with no stray modules beside them."""
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert folders == {"cli", "config", "source", "core", "rulefiles", "notify", "store",
                       "service", "demo"}
    modules = {p.name for p in PACKAGE.glob("*.py")}
    assert modules == {"__init__.py", "__main__.py", "errors.py", "memory.py"}
    for folder in folders:
        doc = ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text()))
        assert doc, f"{folder}/__init__.py says what the folder holds"
