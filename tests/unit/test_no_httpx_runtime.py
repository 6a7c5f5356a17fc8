"""``paywatch serve``, ``paywatch worker`` and ``paywatch sandbox`` run without httpx.

httpx is a development dependency only (FastAPI's TestClient and the tests use it): the
runtime's sync HTTP clients are urllib3 (:mod:`backends.http`), its asyncio ones aiohttp.
Each case runs the command in a child process whose importer refuses ``httpx`` (and
``httpcore``): the API and the sandbox answer ``/healthz``, the worker runs its jobs for
a while, and none of them so much as tries to import it. Next to
``test_packaging_cli.py``, which does the same for the console's libraries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

CHILD = textwrap.dedent(
    """
    import importlib.abc, json, os, signal, sys, threading, time, urllib.request

    BLOCKED = ("httpx", "httpcore")
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
        start = time.time()
        while time.time() < start + 120:
            time.sleep(0.5)
            if probe == "sleep":
                if time.time() > start + 8:  # the worker ran its first jobs
                    break
                continue
            try:
                with urllib.request.urlopen(probe, timeout=2) as r:
                    if r.status == 200:
                        print("UP", flush=True)
                        break
            except OSError:
                pass
        os.kill(os.getpid(), signal.SIGINT if probe.startswith("http") else signal.SIGTERM)

    threading.Thread(target=stop_when_up, daemon=True).start()
    from runtime.cli import main

    try:
        rc = main(argv)
    except KeyboardInterrupt:
        rc = 130
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m])
    print("RESULT " + json.dumps({"rc": rc, "tried": tried, "loaded": loaded}), flush=True)
    """
)


def _run(argv: list[str], tmp_path: Path, probe: str) -> tuple[dict, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_") and k != "PYTHONPATH"
    }
    env |= {
        "PYTHONPATH": str(ROOT),
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'paywatch.db'}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv), probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :]), proc.stdout + proc.stderr


@pytest.mark.parametrize("command", ["serve", "sandbox"])
def test_the_api_and_the_sandbox_serve_without_httpx(command: str, tmp_path: Path) -> None:
    port = free_port()
    result, output = _run(
        [command, "--host", "127.0.0.1", "--port", str(port)],
        tmp_path,
        f"http://127.0.0.1:{port}/healthz",
    )
    assert "UP" in output, output[-3000:]
    assert result["tried"] == [] and result["loaded"] == [], result
    assert result["rc"] in (0, 130)


def test_the_worker_runs_without_httpx(tmp_path: Path) -> None:
    result, output = _run(["worker", "--metrics-port", str(free_port())], tmp_path, "sleep")
    assert result["tried"] == [] and result["loaded"] == [], result
    assert result["rc"] == 0 and "Traceback" not in output, output[-3000:]
