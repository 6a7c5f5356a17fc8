"""The `paywatch` command as a new user runs it: merchant add, sandbox, serve."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import sqlalchemy as sa
from conftest import free_port


def run_cli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "console.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120, **kw)


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer")


def test_merchant_add_sandbox_and_serve_run_a_payment(tmp_path):
    api_port, sandbox_port = free_port(), free_port()
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_API_URL": f"http://127.0.0.1:{api_port}",
        "PAYWATCH_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
    }
    added = run_cli(["merchant", "add", "--name", "cli shop", "--product", "goods:physical",
                     "--pay-org", "SANDBOX_A", "--fee-bps", "50"], env)
    assert added.returncode == 0, added.stderr
    lines = dict(line.split(":", 1) for line in added.stdout.strip().splitlines())
    token, mid = lines["token"].strip(), lines["merchant_id"].strip()
    assert token.startswith("pwk_") and "shown once" in added.stderr
    engine = sa.create_engine(f"sqlite:///{tmp_path}/pw.db")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select token_hash from merchants")).scalar_one()
    engine.dispose()
    assert token not in stored and len(stored) == 64

    bad = run_cli(["merchant", "add", "--name", "x", "--product", "bad space",
                   "--pay-org", "SANDBOX_A"], env)
    assert bad.returncode == 2 and "invalid_context" in bad.stderr and "Traceback" not in bad.stderr

    procs = [subprocess.Popen([sys.executable, "-m", "console.cli", cmd, "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd, port in (("sandbox", sandbox_port), ("serve", api_port))]
    try:
        wait_http(f"http://127.0.0.1:{api_port}/readyz", procs[1])
        http = httpx.Client(base_url=f"http://127.0.0.1:{api_port}",
                            headers={"Authorization": f"Bearer {token}"}, timeout=10)
        r = http.post("/v1/trades", json={
            "out_trade_no": "cli-1", "trade_type": "instant", "amount": 2_000, "currency": "CNY",
            "user_id": "u1", "order_type": "goods", "sub_type": "physical",
            "pay_org_no": "SANDBOX_A"})
        assert r.status_code == 200, r.text
        r = http.post("/v1/trades/cli-1/pay", json={"tools": [{"tool": "channel", "amount": 2_000}]})
        assert r.json()["status"] == "processing"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            trade = http.get("/v1/trades/cli-1").json()["trade"]
            if trade["status"] == "paid":
                break
            time.sleep(0.1)
        assert trade["status"] == "paid" and trade["merchant_id"] == mid
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    assert "pwk_" not in "".join(p.stderr.read() for p in procs if p.stderr)  # no secrets logged
