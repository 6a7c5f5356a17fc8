"""The `paywatch` command as a new user runs it: merchant add, sandbox, serve."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import sqlalchemy as sa
from conftest import free_port, wait_http


def run_cli(args, env, **kw):
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


def test_merchant_add_sandbox_and_serve_run_a_payment(tmp_path):
    api_port, sandbox_port = free_port(), free_port()
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_API_URL": f"http://127.0.0.1:{api_port}",
        "PAYWATCH_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
    }
    added = run_cli(
        [
            "merchant",
            "add",
            "--name",
            "cli shop",
            "--product",
            "goods:physical",
            "--pay-org",
            "SANDBOX_A",
            "--fee-bps",
            "50",
        ],
        env,
    )
    assert added.returncode == 0, added.stderr
    lines = dict(line.split(":", 1) for line in added.stdout.strip().splitlines())
    token, mid = lines["token"].strip(), lines["merchant_id"].strip()
    assert token.startswith("pwk_") and "shown once" in added.stderr
    engine = sa.create_engine(f"sqlite:///{tmp_path}/pw.db")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select token_hash from merchants")).scalar_one()
    engine.dispose()
    assert token not in stored and len(stored) == 64

    bad = run_cli(
        ["merchant", "add", "--name", "x", "--product", "bad space", "--pay-org", "SANDBOX_A"], env
    )
    assert bad.returncode == 2 and "invalid_context" in bad.stderr and "Traceback" not in bad.stderr

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", cmd, "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cmd, port in (("sandbox", sandbox_port), ("serve", api_port))
    ]
    logs = ""
    try:
        wait_http(f"http://127.0.0.1:{sandbox_port}/healthz", procs[0])
        wait_http(f"http://127.0.0.1:{api_port}/readyz", procs[1])
        http = httpx.Client(
            base_url=f"http://127.0.0.1:{api_port}",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        r = http.post(
            "/v1/trades",
            json={
                "out_trade_no": "cli-1",
                "trade_type": "instant",
                "amount": 2_000,
                "currency": "CNY",
                "user_id": "u1",
                "order_type": "goods",
                "sub_type": "physical",
                "pay_org_no": "SANDBOX_A",
            },
        )
        assert r.status_code == 200, r.text
        r = http.post(
            "/v1/trades/cli-1/pay", json={"tools": [{"tool": "channel", "amount": 2_000}]}
        )
        assert r.json()["status"] == "processing"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            trade = http.get("/v1/trades/cli-1").json()["trade"]
            if trade["status"] == "paid":
                break
            time.sleep(0.1)
        # paywatch serve serves the admin API too; a merchant's token is no console session
        admin = http.get("/admin/v1/me")
        assert admin.status_code == 401 and admin.json()["error"]["code"] == "unauthenticated"
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        logs = "".join(p.stderr.read() for p in procs if p.stderr)
    assert trade["status"] == "paid" and trade["merchant_id"] == mid, logs[-4000:]
    assert "pwk_" not in logs  # no secrets logged


def test_worker_refunds_exceptions_and_delivers_signed_notifications(tmp_path):
    """API, sandbox and worker as separate processes on the embedded SQLite default."""
    import json as _json

    from conftest import LiveServer
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    received: list[dict] = []

    async def hook(request):
        received.append({"headers": dict(request.headers), "body": await request.body()})
        return Response("ok")

    receiver = LiveServer(Starlette(routes=[Route("/hook", hook, methods=["POST"])]))
    api_port, sandbox_port, metrics_port = free_port(), free_port(), free_port()
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_API_URL": f"http://127.0.0.1:{api_port}",
        "PAYWATCH_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
        "PAYWATCH_NOTIFY_SECRET": "notify-secret-for-tests",
    }
    with receiver:
        added = run_cli(
            [
                "merchant",
                "add",
                "--name",
                "w shop",
                "--product",
                "goods:physical",
                "--pay-org",
                "SANDBOX_A",
                "--notify-url",
                f"{receiver.url}/hook",
            ],
            env,
        )
        printed = {
            k.strip(): v.strip()
            for k, v in (ln.split(":", 1) for ln in added.stdout.strip().splitlines() if ":" in ln)
        }
        token, mid = printed["token"], printed["merchant_id"]
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "runtime.cli", *cmd],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for cmd in (
                ["sandbox", "--port", str(sandbox_port), "--admin-token", "adm"],
                ["serve", "--port", str(api_port)],
                ["worker", "--metrics-port", str(metrics_port)],
            )
        ]
        try:
            wait_http(f"http://127.0.0.1:{api_port}/readyz", procs[1])
            http = httpx.Client(
                base_url=f"http://127.0.0.1:{api_port}",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )

            def trade(no, kind, amount):
                r = http.post(
                    "/v1/trades",
                    json={
                        "out_trade_no": no,
                        "trade_type": kind,
                        "amount": amount,
                        "currency": "CNY",
                        "user_id": "u1",
                        "order_type": "goods",
                        "sub_type": "physical",
                        "pay_org_no": "SANDBOX_A",
                    },
                )
                assert r.status_code == 200, r.text

            def wait(pred, timeout=30):
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if pred():
                        return True
                    time.sleep(0.2)
                return False

            trade("top-up", "recharge", 1_000)
            http.post(
                "/v1/trades/top-up/pay", json={"tools": [{"tool": "channel", "amount": 1_000}]}
            )
            assert wait(lambda: http.get("/v1/trades/top-up").json()["trade"]["status"] == "paid")
            assert wait(lambda: any(b"trade.paid" in r["body"] for r in received))
            event = next(r for r in received if b"trade.paid" in r["body"])
            from paycore.channels.signing import verify_headers

            # signed with the merchant's own secret (printed once by `merchant add`), not
            # with the platform's shared key
            assert verify_headers(printed["notify_secret"], event["headers"], event["body"])
            assert not verify_headers("notify-secret-for-tests", event["headers"], event["body"])
            assert _json.loads(event["body"])["event_id"] == event["headers"]["x-paywatch-event-id"]

            # a combined payment whose channel part fails: 300 taken from balance must come back
            r = httpx.put(
                f"http://127.0.0.1:{sandbox_port}/admin/knobs/SANDBOX_A",
                json={"fail_rate": 1.0},
                headers={"X-Sandbox-Admin": "adm"},
            )
            assert r.status_code == 200
            trade("combo", "instant", 1_000)
            http.post(
                "/v1/trades/combo/pay",
                json={
                    "tools": [
                        {"tool": "balance", "amount": 300},
                        {"tool": "channel", "amount": 700},
                    ]
                },
            )
            assert wait(
                lambda: http.get("/v1/trades/combo").json()["pay_orders"][0]["status"] == "failed"
            )
            engine = sa.create_engine(f"sqlite:///{tmp_path}/pw.db")

            def exception_resolved():
                with engine.connect() as conn:
                    rows = conn.execute(sa.text("select kind, status from pay_exceptions")).all()
                return rows == [("partial_payment", "resolved")]

            assert wait(exception_resolved, 40)
            from paycore import Database
            from paycore.ledger import balance_of, trial_balance, user_balance

            db = Database(engine)
            with db.session() as s:
                assert balance_of(s, user_balance(mid, "u1", "CNY")) == 1_000
            assert trial_balance(db).ok
            engine.dispose()
            # the worker's own /metrics: the business gauges Prometheus scrapes from it
            body = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
            assert "# TYPE paywatch_compensation_backlog gauge" in body
            assert "paywatch_business_snapshot_ok 1.0" in body
            assert re.search(r"^paywatch_notification_backlog \d+\.\d+$", body, re.M)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(15)
    for p in procs:
        assert p.returncode in (0, -15), p.stderr.read()[-2000:] if p.stderr else ""


def test_user_add_passwd_role(tmp_path):
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_USER_PASSWORD": "first-password",
    }
    from console.auth import verify

    added = run_cli(["user", "add", "--name", "olga", "--role", "operator"], env)
    assert added.returncode == 0, added.stderr
    assert "first-password" not in added.stdout + added.stderr
    again = run_cli(["user", "add", "--name", "olga", "--role", "operator"], env)
    assert again.returncode == 2 and "already exists" in again.stderr
    engine = sa.create_engine(f"sqlite:///{tmp_path}/pw.db")
    assert verify(engine, "olga", "first-password").role == "operator"
    env["PAYWATCH_USER_PASSWORD"] = "second-password"
    assert run_cli(["user", "passwd", "--name", "olga"], env).returncode == 0
    assert run_cli(["user", "role", "--name", "olga", "--role", "manager"], env).returncode == 0
    assert verify(engine, "olga", "first-password") is None
    assert verify(engine, "olga", "second-password").role == "manager"
    missing = run_cli(["user", "passwd", "--name", "nobody"], env)
    assert missing.returncode == 2 and "no user" in missing.stderr
    short = run_cli(
        ["user", "add", "--name", "x", "--role", "viewer"],
        env | {"PAYWATCH_USER_PASSWORD": "short"},
    )
    assert short.returncode == 2 and "at least 8" in short.stderr
    engine.dispose()


def test_shadow_drop_removes_only_the_shadow_file(tmp_path):
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
    }
    assert run_cli(["migrate"], env).returncode == 0
    shadow = tmp_path / "pw_shadow.db"
    shadow.write_bytes(b"")
    done = run_cli(["shadow", "drop"], env)
    assert done.returncode == 0, done.stderr
    assert not shadow.exists() and (tmp_path / "pw.db").exists()
