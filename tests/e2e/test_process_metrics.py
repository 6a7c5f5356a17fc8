"""Every process that serves ``/metrics`` passes ``promtool check metrics``, scraped over
HTTP from the real ``paywatch serve`` and ``paywatch worker --metrics-port`` (``paywatch
up``'s is checked in test_up_core_only.py); the sandbox serves none (docs/metrics.md).
A missing promtool fails under CI=true and skips elsewhere."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]


def promtool_check(text: str) -> None:
    """``promtool check metrics`` accepts ``text`` (no error and no lint finding)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool missing under CI")
        pytest.skip("promtool not installed")
    out = subprocess.run(
        [promtool, "check", "metrics"], input=text, text=True, capture_output=True, timeout=60
    )
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr


def _start(tmp_path: Path, name: str, *argv: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")}
    env |= {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
    }
    with (tmp_path / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", *argv],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def test_serve_and_worker_metrics_pass_promtool_and_the_sandbox_serves_none(
    tmp_path: Path,
) -> None:
    migrated = _start(tmp_path, "migrate", "migrate")
    assert migrated.wait(120) == 0, (tmp_path / "migrate.log").read_text()
    api, worker, sandbox = free_port(), free_port(), free_port()
    procs = [
        _start(tmp_path, "serve", "serve", "--port", str(api), "--log-level", "warning"),
        _start(tmp_path, "worker", "worker", "--metrics-port", str(worker)),
        _start(tmp_path, "sandbox", "sandbox", "--port", str(sandbox)),
    ]
    try:
        urls = [f"http://127.0.0.1:{p}" for p in (api, worker, sandbox)]
        wait_http(f"{urls[0]}/healthz", procs[0], timeout=90)
        wait_http(f"{urls[1]}/metrics", procs[1], timeout=90)
        wait_http(f"{urls[2]}/healthz", procs[2], timeout=90)
        httpx.get(f"{urls[0]}/v1/trades/nope", timeout=5)  # an HTTP request series
        for url in urls[:2]:
            text = httpx.get(f"{url}/metrics", timeout=10).text
            assert "paywatch_build_info{" in text, url
            promtool_check(text)
        assert httpx.get(f"{urls[2]}/metrics", timeout=5).status_code == 404
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
