"""``paywatch serve``, ``worker`` and ``sandbox`` run without the console extra and without
httpx; the CLI fails in one line.

Each case runs ``paywatch`` in a child process whose importer refuses the console's
libraries (streamlit, plotly, pandas, pyarrow), as on an install without
``paywatch[console]``, or httpx (a development dependency only: the runtime's sync HTTP
clients are urllib3, :mod:`backends.http`, its asyncio ones aiohttp): the API and the
sandbox serve ``/healthz`` and the worker runs its jobs, and none of them so much as
tries to import them (:mod:`refused_imports`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import free_port
from refused_imports import CONSOLE_LIBRARIES, HTTPX, ROOT, run_refusing

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("blocked", [CONSOLE_LIBRARIES, HTTPX], ids=["console", "httpx"])
@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_the_api_and_the_sandbox_serve_without(
    command: str, blocked: tuple[str, ...], tmp_path: Path
) -> None:
    port = free_port()
    result, proc = run_refusing(
        [command, "--host", "127.0.0.1", "--port", str(port)],
        tmp_path,
        blocked,
        probe=f"http://127.0.0.1:{port}/healthz",
    )
    assert "UP" in proc.stdout, proc.stderr[-3000:]
    assert result["tried"] == [] and result["loaded"] == [], result
    assert result["rc"] in (0, 130)


@pytest.mark.parametrize("blocked", [CONSOLE_LIBRARIES, HTTPX], ids=["console", "httpx"])
def test_the_worker_runs_without(blocked: tuple[str, ...], tmp_path: Path) -> None:
    result, proc = run_refusing(
        ["worker", "--metrics-port", str(free_port())], tmp_path, blocked, probe="sleep"
    )
    assert result["tried"] == [] and result["loaded"] == [], result
    assert result["rc"] == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_console_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    result, proc = run_refusing(
        ["console", "--port", str(free_port())], tmp_path, CONSOLE_LIBRARIES
    )
    assert result["rc"] == 2
    assert "pip install 'paywatch[console]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def _paywatch(*argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")}
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *argv],
        cwd=ROOT,
        env=child_env | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_version() -> None:
    from importlib.metadata import version

    proc = _paywatch("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"paywatch {version('paywatch')}"


@pytest.mark.parametrize(
    ("argv", "env", "named"),
    [
        (["migrate"], {"PAYWATCH_NODE_ID": "abc"}, "PAYWATCH_NODE_ID must be a whole number"),
        (["serve"], {"PAYWATCH_NODE_ID": "4096"}, "PAYWATCH_NODE_ID must be a whole number"),
        (["worker"], {"PAYWATCH_DATABASE_URL": "mysql://u:hunter2@h/db"}, "PAYWATCH_DATABASE_URL"),
        (["serve", "--log-level", "loud"], {}, "argument --log-level: invalid choice: 'loud'"),
        (["migrate"], {"PAYWATCH_LOG_LEVEL": "loud"}, "--log-level must be one of"),
        (["migrate"], {"PAYWATCH_SHADOW": "maybe"}, "PAYWATCH_SHADOW must be 1 or 0"),
        (["worker", "--log-level", "loud"], {}, "argument --log-level: invalid choice: 'loud'"),
    ],
)
def test_bad_settings_and_flags_fail_in_one_line(
    argv: list[str], env: dict[str, str], named: str, tmp_path: Path
) -> None:
    proc = _paywatch(*argv, PAYWATCH_VAR_DIR=str(tmp_path), **env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and named in errors[0], proc.stderr
    assert "hunter2" not in proc.stderr
