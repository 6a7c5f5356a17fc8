"""The code's shape: formatted and linted (CI runs only ``make test``), small modules and,
in the pay core, short functions."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUFF = Path(sys.executable).parent / "ruff"
PACKAGES = (
    "paycore",
    "stability",
    "collectors",
    "alerts",
    "console",
    "runtime",
    "simulator",
    "backends",
)
#: the module size limit holds for the tests, benchmarks and migrations too
EVERY_FOLDER = (*PACKAGES, "tests", "bench", "migrations")
MAX_MODULE_LINES = 400
MAX_PAYCORE_FUNCTION_LINES = 60


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    assert RUFF.exists(), f"ruff is not installed beside {sys.executable}"
    cmd = [str(RUFF), *args, "--no-cache"]  # no .ruff_cache written into the checkout
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def _modules(*packages: str) -> list[Path]:
    return sorted(
        path
        for pkg in packages
        if (ROOT / pkg).is_dir()
        for path in (ROOT / pkg).rglob("*.py")
        if "__pycache__" not in path.parts
    )


def test_the_tree_is_formatted() -> None:
    out = _ruff("format", "--check", ".")
    assert out.returncode == 0, f"run `ruff format .`:\n{out.stdout}{out.stderr}"


def test_the_tree_passes_the_linter() -> None:
    out = _ruff("check", ".")
    assert out.returncode == 0, f"`ruff check .` finds:\n{out.stdout}{out.stderr}"


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in _modules(*EVERY_FOLDER)}
    assert sizes, "no package found"
    over = {p.relative_to(ROOT): n for p, n in sizes.items() if n > MAX_MODULE_LINES}
    listing = "\n".join(f"  {p}: {n} lines" for p, n in sorted(over.items()))
    assert not over, f"modules over {MAX_MODULE_LINES} lines:\n{listing}"


def _long_functions(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    funcs = (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef))
    return [
        (f"{path.relative_to(root)}:{f.lineno} {f.name}", f.end_lineno - f.lineno + 1)
        for f in funcs
        if f.end_lineno is not None and f.end_lineno - f.lineno + 1 > MAX_PAYCORE_FUNCTION_LINES
    ]


def test_no_pay_core_function_is_over_the_size_limit() -> None:
    modules = _modules("paycore")
    assert modules, "no paycore package found"
    over = [item for path in modules for item in _long_functions(path)]
    listing = "\n".join(f"  {where}: {n} lines" for where, n in over)
    assert not over, f"paycore functions over {MAX_PAYCORE_FUNCTION_LINES} lines:\n{listing}"


def test_the_function_check_finds_a_long_function_and_passes_a_short_one(tmp_path: Path) -> None:
    """The size check is not vacuous: a nested or async function counts too."""
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_PAYCORE_FUNCTION_LINES))
    src = tmp_path / "long.py"
    src.write_text(f"class C:\n    async def long(self):\n{body}\n\n\ndef short():\n    return 1\n")
    assert _long_functions(src, tmp_path) == [("long.py:2 long", MAX_PAYCORE_FUNCTION_LINES + 1)]


def test_no_formatter_escapes() -> None:
    """The formatter decides the layout everywhere: no ``fmt: skip`` / ``fmt: off``."""
    marker = "# fmt: "  # split so this file does not match itself
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _modules(*EVERY_FOLDER)
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if marker + "skip" in line or marker + "off" in line
    ]
    assert not found, f"formatter escapes: {found}"
