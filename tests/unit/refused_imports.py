"""Run ``paywatch <argv>`` in a child process whose importer refuses some top-level
packages, as on an install without them, and report what the child tried to import.

``probe``: a URL the child polls until it answers 200 (then it stops itself with
SIGINT), ``"sleep"`` (the worker: runs ~10 s, then SIGTERM) or ``"none"`` (the command
ends by itself; the refused packages also look uninstalled to ``find_spec``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: the console extra's libraries, and the HTTP client the runtime no longer uses
CONSOLE_LIBRARIES = ("streamlit", "plotly", "pandas", "pyarrow")
HTTPX = ("httpx", "httpcore")

CHILD = textwrap.dedent(
    """
    import importlib.abc, json, os, signal, sys, threading, time, urllib.request

    argv, probe, BLOCKED = json.loads(sys.argv[1]), sys.argv[2], tuple(json.loads(sys.argv[3]))
    tried = []

    class Refuse(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                tried.append(name)
                raise ImportError(f"{name} is not installed (refused by the test)")
            return None

    sys.meta_path.insert(0, Refuse())

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
        # as KeyboardInterrupt (130), where SIGTERM would end the process
        os.kill(os.getpid(), signal.SIGINT if probe.startswith("http") else signal.SIGTERM)

    if probe != "none":
        threading.Thread(target=stop_when_up, daemon=True).start()
    else:  # as uninstalled to importlib.util.find_spec too (None: "no such module")
        sys.modules.update(dict.fromkeys(BLOCKED))
    from runtime.cli import main

    try:
        rc = main(argv)
    except KeyboardInterrupt:
        rc = 130
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m])
    print("RESULT " + json.dumps({"rc": rc, "tried": tried, "loaded": loaded}), flush=True)
    """
)


def run_refusing(
    argv: list[str], tmp_path: Path, blocked: tuple[str, ...], probe: str = "none"
) -> tuple[dict, subprocess.CompletedProcess[str]]:
    """``paywatch <argv>`` on a throw-away SQLite database with ``blocked`` refused: the
    child's ``{"rc", "tried", "loaded"}`` and the finished process."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_") and k != "PYTHONPATH"
    }
    env |= {
        "PYTHONPATH": str(ROOT),
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path / 'paywatch.db'}",
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv), probe, json.dumps(blocked)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"no result: rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1][len("RESULT ") :]), proc
