"""Imports flow one way, with no cycle anywhere, and nothing is built at import time.

The direction and the cycles are checked by import-linter (``lint-imports``) against
the contracts in ``pyproject.toml``. The tests below run it on the real tree, and on
small trees in ``tmp_path`` that break one rule each, so a contract that stopped
catching what it should would fail here too.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "importlinter"
]
PACKAGES: tuple[str, ...] = tuple(CONFIG["root_packages"])


def _lint(cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    args = [str(LINT_IMPORTS), "--no-cache"]
    if config is not None:
        args += ["--config", str(config)]
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"},
    )


def _toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    """Every root package with an empty ``__init__``, plus ``files``, and our contracts."""
    for package in PACKAGES:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    for name, source in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(source)
    lines = ["[tool.importlinter]", f"root_packages = {_toml_list(list(PACKAGES))}", ""]
    for i, contract in enumerate(CONFIG["contracts"]):
        lines.append(f'[[tool.importlinter.contracts]]\nid = "c{i}"')
        for key, value in contract.items():
            rendered = _toml_list(value) if isinstance(value, list) else repr(value)
            lines.append(f"{key} = {rendered}".replace("'", '"'))
        lines.append("")
    config = tmp_path / "contracts.toml"
    config.write_text("\n".join(lines))
    return config


# -- the real tree -------------------------------------------------------------------------


def test_the_project_keeps_every_import_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert f"{len(CONFIG['contracts'])} kept, 0 broken" in result.stdout


def test_the_contracts_cover_every_package_of_ours() -> None:
    ours = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert ours == set(PACKAGES)
    layers = CONFIG["contracts"][0]["layers"]
    layered = {name for layer in layers for name in re.split(r"[ |]+", layer)}
    assert layered == set(PACKAGES)
    assert set(CONFIG["contracts"][1]["ancestors"]) == set(PACKAGES)


# -- the contracts catch what they should ---------------------------------------------------


def test_a_tree_that_follows_the_rules_passes(tmp_path: Path) -> None:
    config = _tree(
        tmp_path,
        {
            "runtime/cli.py": "import console.app\nimport simulator.drills\nimport paycore.core\n",
            "console/app.py": "import simulator.report\nimport alerts.rules\n",
            "paycore/core.py": "import stability.guard\nimport collectors.metrics\n",
            "stability/guard.py": "import collectors.metrics\nimport backends.registry\n",
        },
    )
    result = _lint(tmp_path, config)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.parametrize(
    ("files", "broken"),
    [
        ({"paycore/core.py": "import runtime.bootstrap\n"}, "paycore.core -> runtime"),
        ({"console/pages.py": "from runtime import settings\n"}, "console.pages -> runtime"),
        ({"simulator/runner.py": "import console.views\n"}, "simulator.runner -> console"),
        ({"collectors/store.py": "import stability.limits\n"}, "collectors.store -> stability"),
        ({"stability/guard.py": "import paycore.models\n"}, "stability.guard -> paycore"),
        ({"backends/registry.py": "import collectors.store\n"}, "backends.registry -> collectors"),
        ({"paycore/a.py": "import alerts.rules\n"}, "paycore.a -> alerts"),
        (
            {"collectors/x.py": "def f():\n    import stability.guard\n"},
            "collectors.x -> stability",
        ),
        (
            {
                "collectors/y.py": "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    import paycore.core\n"
            },
            "collectors.y -> paycore",
        ),
    ],
)
def test_an_upward_import_breaks_the_layers(tmp_path: Path, files: dict, broken: str) -> None:
    config = _tree(tmp_path, files)
    result = _lint(tmp_path, config)
    assert result.returncode == 1
    flat = " ".join(result.stdout.split())
    assert "Layers" in flat and "BROKEN" in flat
    assert broken in flat, result.stdout[-3000:]


def test_an_import_cycle_between_modules_is_caught(tmp_path: Path) -> None:
    config = _tree(
        tmp_path,
        {
            "paycore/payments.py": "from paycore import refunds\n",
            "paycore/refunds.py": "def f():\n    from paycore import payments\n",
        },
    )
    result = _lint(tmp_path, config)
    assert result.returncode == 1
    assert "No cycles are allowed in paycore" in result.stdout, result.stdout[-3000:]


def test_a_cycle_between_subpackages_is_caught(tmp_path: Path) -> None:
    config = _tree(
        tmp_path,
        {
            "stability/limits/memory.py": "from stability.breakers import store\n",
            "stability/breakers/store.py": "import stability.limits.memory\n",
        },
    )
    result = _lint(tmp_path, config)
    assert result.returncode == 1
    assert "No cycles are allowed in stability" in result.stdout, result.stdout[-3000:]


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


@pytest.mark.slow  # a fresh interpreter per package
@pytest.mark.parametrize("package", PACKAGES)
def test_importing_a_package_starts_no_thread(package: str) -> None:
    assert _threads_after_import(package) == "1"


@pytest.mark.slow  # a fresh interpreter importing every module
def test_importing_everything_starts_no_thread() -> None:
    assert _threads_after_import(", ".join(PACKAGES)) == "1"
