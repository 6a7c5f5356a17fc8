"""DESIGN.md §1: imports flow one way, and nothing is built at import time.

The direction check is static (``ast``): no package is imported to check it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("paycore", "stability", "collectors", "alerts", "console")

#: package -> the other packages of ours it may import (itself is always fine)
ALLOWED: dict[str, frozenset[str]] = {
    "collectors": frozenset(),
    "stability": frozenset({"collectors"}),
    "alerts": frozenset({"collectors"}),
    "paycore": frozenset({"stability", "collectors"}),
    "console": frozenset({"paycore", "stability", "collectors", "alerts"}),
}


def _module_parts(path: Path) -> list[str]:
    """Dotted module name of ``path`` (relative to ROOT) as parts."""
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return parts


def imported_packages(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Top-level packages of ours that ``source`` (the module ``module``) imports.

    Absolute imports count by their first component; relative imports are resolved
    against ``module`` (``is_package``: the source is the package's ``__init__``).
    Literal ``importlib.import_module("x")`` / ``__import__("x")`` calls count too.
    Imports inside functions and ``TYPE_CHECKING`` blocks count: they are edges all the same.
    """
    tree = ast.parse(source)
    mod_parts = module.split(".")
    if node_level_too_deep(tree, len(mod_parts) if is_package else len(mod_parts) - 1):
        raise ValueError(f"{module}: relative import beyond the top-level package")
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module:
                    found.add(node.module.split(".")[0])
            else:
                # A relative import climbs ``level - 1`` packages from the current one;
                # it can never leave the top-level package (Python refuses that).
                found.add(mod_parts[0])
        elif (
            isinstance(node, ast.Call)
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and (
                (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
            )
        ):
            target = node.args[0].value
            if not target.startswith("."):
                found.add(target.split(".")[0])
    return found & set(PACKAGES)


def node_level_too_deep(tree: ast.AST, depth: int) -> bool:
    """True if a relative import climbs above the top-level package (``depth`` packages)."""
    return any(isinstance(n, ast.ImportFrom) and n.level > depth for n in ast.walk(tree))


def violations(package: str, imported: set[str]) -> set[str]:
    return {p for p in imported if p != package and p not in ALLOWED[package]}


def _package_files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)


# -- the checker itself --------------------------------------------------------------------


def test_checker_catches_a_forbidden_absolute_import() -> None:
    imported = imported_packages("from console import x\n", "paycore.trades")
    assert imported == {"console"}
    assert violations("paycore", imported) == {"console"}


@pytest.mark.parametrize(
    ("source", "module", "expected"),
    [
        ("import alerts.rules\n", "collectors.store", {"alerts"}),
        ("import os, paycore.models as m\n", "stability.guard", {"paycore"}),
        ("def f():\n    from console.settings import Settings\n", "alerts.rules", {"console"}),
        (
            "from typing import TYPE_CHECKING\n"
            "if TYPE_CHECKING:\n    from paycore import PayCore\n",
            "collectors.x",
            {"paycore"},
        ),
        ("import importlib\nimportlib.import_module('console.cli')\n", "paycore.a", {"console"}),
        ("__import__('alerts')\n", "stability.a", {"alerts"}),
        ("from . import models\n", "paycore.trades", {"paycore"}),
        ("from .. import errors\n", "paycore.locks.base", {"paycore"}),
        ("from .base import X\n", "paycore.locks", {"paycore"}),
        ("import sqlalchemy\nfrom redis import Redis\n", "paycore.db.engine", set()),
    ],
)
def test_checker_resolves_import_forms(source: str, module: str, expected: set[str]) -> None:
    is_package = module == "paycore.locks"
    assert imported_packages(source, module, is_package=is_package) == expected


def test_checker_allows_self_imports_and_allowed_edges() -> None:
    assert violations("paycore", {"paycore", "stability", "collectors"}) == set()
    assert violations("console", set(PACKAGES)) == set()
    assert violations("collectors", {"collectors"}) == set()
    assert violations("collectors", {"stability"}) == {"stability"}
    assert violations("stability", {"paycore", "alerts"}) == {"paycore", "alerts"}
    assert violations("alerts", {"paycore", "stability", "collectors"}) == {"paycore", "stability"}


# -- the real tree -------------------------------------------------------------------------


@pytest.mark.parametrize("package", PACKAGES)
def test_package_exists_and_is_scanned(package: str) -> None:
    files = _package_files(package)
    assert (ROOT / package / "__init__.py") in files


@pytest.mark.parametrize("package", PACKAGES)
def test_import_directions(package: str) -> None:
    bad: dict[str, set[str]] = {}
    for path in _package_files(package):
        parts = _module_parts(path)
        assert parts[0] == package
        imported = imported_packages(
            path.read_text(encoding="utf-8"),
            ".".join(parts),
            is_package=path.name == "__init__.py",
        )
        wrong = violations(package, imported)
        if wrong:
            bad[str(path.relative_to(ROOT))] = wrong
    assert not bad, f"{package} imports packages DESIGN.md §1 forbids: {bad}"


# -- nothing runs at import time -----------------------------------------------------------

_THREADS = "import {mods}; import threading; print(threading.active_count())"


def _threads_after_import(mods: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-c", _THREADS.format(mods=mods)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_starts_no_thread(package: str) -> None:
    assert _threads_after_import(package) == "1"


def test_importing_everything_starts_no_thread() -> None:
    assert _threads_after_import(", ".join(PACKAGES)) == "1"


def test_checker_rejects_relative_import_beyond_top_level() -> None:
    with pytest.raises(ValueError, match="beyond the top-level"):
        imported_packages("from ... import x\n", "paycore.locks.base")
