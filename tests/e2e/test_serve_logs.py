"""`paywatch serve --log-format json`: every line on stderr is a JSON object with the
time, level, logger, message and context fields; a request's lines carry its id."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
from conftest import free_port, wait_http

FIELDS = {"time", "level", "logger", "message", "request_id", "trace_id", "merchant_id"}


def test_serve_logs_json_lines_with_the_request_id(tmp_path):
    port = free_port()
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_API_URL": f"http://127.0.0.1:{port}",
    }
    env.pop("PAYWATCH_LOG_FORMAT", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.cli", "serve", "--log-format", "json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/trades/nope",
            headers={"X-Request-Id": "serve-rid-7"},
            timeout=10,
        )
        assert r.headers["x-request-id"] == "serve-rid-7"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "serve logged nothing"
    parsed = []
    for line in lines:
        data = json.loads(line)  # every line: no bare uvicorn or print output
        assert set(data) >= FIELDS, line
        parsed.append(data)
    assert any(d["logger"].startswith("uvicorn") for d in parsed)
    mine = [d for d in parsed if d["request_id"] == "serve-rid-7"]
    assert (
        mine and mine[0]["logger"] == "uvicorn.access" and "/v1/trades/nope" in mine[0]["message"]
    )
    assert all(d["level"] in {"debug", "info", "warning", "error", "critical"} for d in parsed)
