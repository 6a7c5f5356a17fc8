"""``paywatch up`` on an install without the console extra (``make install-core``): it
starts everything else, says once on stderr how to install the console, serves a
``/metrics`` that ``promtool check metrics`` accepts, and Ctrl-C stops it with status 0.

The child process sees streamlit, plotly, pandas and pyarrow as uninstalled (``None`` in
``sys.modules``: ``find_spec`` answers None and an import raises ImportError), logs JSON,
and records which of them got loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import free_port
from test_process_metrics import promtool_check

from runtime.up import CONSOLE_MISSING

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import json, os, signal, sys, threading, time, urllib.request

    BLOCKED = ("streamlit", "plotly", "pandas", "pyarrow")
    sys.modules.update(dict.fromkeys(BLOCKED))
    argv, api, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]

    def scrape_then_stop():
        deadline = time.time() + 120
        while time.time() < deadline:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(api + "/readyz", timeout=2) as r:
                    if r.status != 200:
                        continue
                time.sleep(3)  # a few worker job runs and simulated payments
                with urllib.request.urlopen(api + "/metrics", timeout=10) as r:
                    open(out, "wb").write(r.read())
                break
            except OSError:
                pass
        os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C sends

    threading.Thread(target=scrape_then_stop, daemon=True).start()
    from runtime.cli import main

    rc = main(argv)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED and sys.modules[m])
    print("RESULT " + json.dumps({"rc": rc, "loaded": loaded}), flush=True)
    """
)


def test_up_without_the_console_extra_runs_the_rest(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("api", "sandbox", "console", "receiver")}
    api = f"http://127.0.0.1:{ports['api']}"
    argv = ["up", "--log-format", "json", "--rate", "2"]
    for name, port in ports.items():
        argv += [f"--{name}-port", str(port)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")}
    env |= {"PYTHONPATH": str(ROOT)}
    scraped = tmp_path / "metrics.txt"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(argv), api, str(scraped)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    results = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert results, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr[-4000:]}"
    result = json.loads(results[-1][len("RESULT ") :])
    assert result == {"rc": 0, "loaded": []}, proc.stderr[-4000:]

    assert "paywatch is up" in proc.stdout and "paywatch: stopped" in proc.stdout
    assert "  console   http" not in proc.stdout  # the banner names no console
    lines = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.strip()]  # JSON only
    missing = [ln for ln in lines if CONSOLE_MISSING in ln["message"]]
    assert len(missing) == 1 and missing[0]["level"] == "warning", proc.stderr[-4000:]
    assert not [ln for ln in lines if ln["level"] in ("error", "critical")], proc.stderr[-4000:]

    text = scraped.read_text()
    assert "paywatch_build_info" in text and "paywatch_job_runs_total" in text
    promtool_check(text)
