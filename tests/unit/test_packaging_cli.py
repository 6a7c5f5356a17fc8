"""The API and the worker run without the console extra; the CLI fails in one line.

Each case runs ``paywatch`` in a child process whose importer refuses the console's
libraries (streamlit, plotly, pandas, pyarrow), as on an install without
``paywatch[console]``: the API serves ``/healthz`` and the worker runs its jobs, and
neither so much as tries to import them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

#: installs the refusing importer, runs ``paywatch <argv>`` and prints what was tried
CHILD = textwrap.dedent(
    """
    import importlib.abc, json, os, signal, sys, threading, time, urllib.request

    BLOCKED = ("streamlit", "plotly", "pandas", "pyarrow")
    tried = []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                tried.append(name)
                raise ImportError(f"{name} is not installed (refused by the test)")
            return None

    sys.meta_path.insert(0, Refuse())
    argv, probe = json.loads(sys.argv[1]), sys.argv[2]

    def stop_when_up():
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.5)
            if probe == "sleep":
                if time.time() > deadline - 110:  # the worker ran ~10 s
                    break
                continue
            try:
                with urllib.request.urlopen(probe, timeout=2) as r:
                    if r.status == 200:
                        print("UP", flush=True)
                        break
            except OSError:
                pass
        # uvicorn re-raises the signal it caught once it has shut down: SIGINT comes back
        # as KeyboardInterrupt (main returns 130), where SIGTERM would end the process
        os.kill(os.getpid(), signal.SIGINT if probe.startswith("http") else signal.SIGTERM)

    if probe != "none":
        threading.Thread(target=stop_when_up, daemon=True).start()
    else:  # as uninstalled to importlib.util.find_spec too (None: "no such module")
        sys.modules.update(dict.fromkeys(BLOCKED))
    from runtime.cli import main

    rc = main(argv)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m])
    print("RESULT " + json.dumps({"rc": rc, "tried": tried, "loaded": loaded}), flush=True)
    """
)


def _run(
    argv: list[str], tmp_path: Path, probe: str = "none", **env: str
) -> subprocess.CompletedProcess[str]:
    child_env = {
        k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_") and k != "PYTHONPATH"
    }
    child_env |= {
        "PYTHONPATH": str(ROOT),
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'paywatch.db'}",
        **env,
    }
    return subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv), probe],
        cwd=tmp_path,
        env=child_env,
        capture_output=True,
        text=True,
        timeout=240,
    )


def _result(proc: subprocess.CompletedProcess[str]) -> dict:
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_api_serves_without_the_console_libraries(tmp_path: Path) -> None:
    port = _free_port()
    proc = _run(
        ["serve", "--host", "127.0.0.1", "--port", str(port)],
        tmp_path,
        probe=f"http://127.0.0.1:{port}/healthz",
    )
    result = _result(proc)
    assert "UP" in proc.stdout, proc.stderr[-3000:]
    assert result["tried"] == [] and result["loaded"] == []
    assert result["rc"] in (0, 130)


def test_the_worker_runs_without_the_console_libraries(tmp_path: Path) -> None:
    proc = _run(["worker", "--metrics-port", str(_free_port())], tmp_path, probe="sleep")
    result = _result(proc)
    assert result["tried"] == [] and result["loaded"] == [], result
    assert result["rc"] == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_console_without_the_extra_says_what_to_install(tmp_path: Path) -> None:
    proc = _run(["console", "--port", str(_free_port())], tmp_path)
    result = _result(proc)
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
