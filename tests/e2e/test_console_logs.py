"""``paywatch console --log-format json --log-level debug``: every line the console
process writes, Streamlit's and uvicorn's as much as its own, is one JSON object with
time, level, logger and the context fields, at the level asked for; stdout stays empty
(Streamlit's welcome banner is hidden, what it prints on stop is logged). The page is
opened once in Chromium, so a session runs the app script, and Ctrl-C stops it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from browser_stack import browser  # noqa: F401 - the fixture
from conftest import free_port, wait_http

from runtime.logs import CONTEXT_FIELDS

#: loggers of Streamlit's server and of the libraries under it; any other is the app's
SERVER_SIDE = ("streamlit", "uvicorn", "watchdog", "asyncio")


def test_console_logs_every_line_as_json(tmp_path: Path, browser) -> None:  # noqa: F811
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")}
    env |= {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
    }
    cli = [sys.executable, "-m", "runtime.cli"]
    migrated = subprocess.run([*cli, "migrate"], env=env, capture_output=True, timeout=120)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as o, err.open("wb") as e:
        argv = ["console", "--log-format", "json", "--log-level", "debug", "--port", str(port)]
        proc = subprocess.Popen(
            [*cli, *argv], env=env, stdout=o, stderr=e, cwd=tmp_path, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/_stcore/health", proc, timeout=90)
        page = browser.new_page()
        page.goto(url)
        page.get_by_role("textbox", name="User name").wait_for(timeout=60_000)  # the app ran
        page.close()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches both processes
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert out.read_text() == ""
    lines = [json.loads(ln) for ln in err.read_text().splitlines() if ln.strip()]
    for line in lines:
        assert {"time", "level", "logger", "message", *CONTEXT_FIELDS} <= set(line), line
        assert line["time"].endswith("Z")
    loggers = {line["logger"] for line in lines}
    assert any(line["level"] == "debug" for line in lines)  # the level reached Streamlit
    assert any(name.startswith("uvicorn") for name in loggers), loggers
    assert any(
        "Uvicorn server started" in line["message"] for line in lines
    )  # where it listens, now that the banner is hidden
    assert [line["message"] for line in lines if line["logger"] == "streamlit.cli"] == [
        "Stopping..."
    ]
    assert any(not name.startswith(SERVER_SIDE) for name in loggers), loggers
