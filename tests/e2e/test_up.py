"""`paywatch up` as a newcomer runs it: one command, everything answers, payments complete,
Ctrl-C stops it all. On the embedded default (SQLite under ./var, no services) and on
PostgreSQL + Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import free_port

from console.auth import verify


def _wait(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"paywatch up exited ({proc.returncode}):\n{log.read_text()}")
        try:
            if check():
                return
        except (httpx.HTTPError, sa.exc.OperationalError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"{what} not reached in {timeout}s:\n{log.read_text()[-4000:]}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _run_up(tmp_path: Path, extra_env: dict[str, str]) -> None:
    ports = {name: free_port() for name in ("api", "sandbox", "console", "receiver")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")} | extra_env
    log = tmp_path / "up.log"
    cmd = [
        sys.executable,
        "-m",
        "runtime.cli",
        "up",
        "--rate",
        "4",
        "--api-port",
        str(ports["api"]),
        "--sandbox-port",
        str(ports["sandbox"]),
        "--console-port",
        str(ports["console"]),
        "--receiver-port",
        str(ports["receiver"]),
    ]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    api, console = f"http://127.0.0.1:{ports['api']}", f"http://127.0.0.1:{ports['console']}"
    db_url = extra_env.get("PAYWATCH_DATABASE_URL", f"sqlite:///{tmp_path}/var/paywatch.db")
    engine = sa.create_engine(db_url)
    try:
        _wait("the API", lambda: _answers(f"{api}/readyz"), proc, log)
        _wait("the console", lambda: _answers(f"{console}/_stcore/health"), proc, log)
        _wait("the banner", lambda: "Ctrl-C stops everything" in log.read_text(), proc, log)
        banner = log.read_text()
        assert f"console   {console}" in banner
        logins = dict(
            re.findall(
                r"^\s{4}(\w+)\s+(\S+)\s+\((?:viewer|operator|manager|admin)\)$", banner, re.M
            )
        )
        assert set(logins) == {"viewer", "operator", "manager", "admin"}
        for user, password in logins.items():  # the printed logins work, and only they
            assert verify(engine, user, password) is not None
            assert verify(engine, user, password + "x") is None

        def paid() -> int:
            with engine.connect() as conn:
                return conn.execute(
                    sa.text("select count(*) from trades where status = 'paid'")
                ).scalar_one()

        _wait("simulated payments completing", lambda: paid() >= 5, proc, log, timeout=90)
        assert "paywatch_link_requests" in httpx.get(f"{api}/metrics", timeout=5).text

        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        assert proc.wait(60) == 0, log.read_text()[-4000:]
        text = log.read_text()
        assert "paywatch: stopped" in text and "Traceback" not in text, text[-4000:]
        for url in (f"{api}/healthz", f"{console}/_stcore/health"):
            assert not _answers(url), f"{url} still answers after the stop"
        with engine.connect() as conn:  # nothing left half-claimed by the stopped worker
            running = conn.execute(
                sa.text("select count(*) from compensation_tasks where status = 'running'")
            ).scalar_one()
        assert running == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        engine.dispose()


def test_up_on_the_embedded_default(tmp_path):
    _run_up(tmp_path, {})
    var = tmp_path / "var"
    assert (var / "paywatch.db").exists()
    for secret_file in ("demo_logins.json", "channel_secrets.json", "notify_secret"):
        assert (var / secret_file).stat().st_mode & 0o077 == 0, secret_file


@pytest.mark.timeout(300)
def test_up_on_postgresql_and_redis(tmp_path, empty_pg_url, redis_url):
    """A first start: ``paywatch up`` migrates the empty database itself."""
    pg_url = empty_pg_url
    _run_up(tmp_path, {"PAYWATCH_DATABASE_URL": pg_url, "PAYWATCH_REDIS_URL": redis_url})
