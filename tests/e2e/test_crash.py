"""Crash safety (issue #8, point 4): ``kill -9`` the platform in the middle of a load.

Real processes on PostgreSQL and Redis, started through the CLI: the sandbox channel
(``paywatch sandbox``), the pay core API (``paywatch serve``) and the jobs
(``paywatch worker``). Merchant client threads create and pay trades over HTTP
(channel pays, balance pays and balance + channel combinations, some refunds), while
the sandbox fails some payments, answers some sends with a 503 (the request never
reaches the channel's books: the same state as a platform that died between its
commit and the send) and calls back every result twice.

Half-way through the load the API *and* the worker get SIGKILL, with requests, sends
and callbacks in flight; callbacks the sandbox cannot deliver while the API is down
are lost for good (it gives up after four quick tries). Both are restarted; the
clients retry every request with the same business numbers until they get an answer,
as a merchant would.

Recovery is what an operator runs after a crash: the worker restarts compensation
(exception refunds, re-sending channel calls, summary posting) on its own schedule,
and the operator runs the active query of orders stuck in *processing* and both
reconciliations at once instead of waiting for their 30 s / 60 s / daily timers (the
same functions, called from this process: ``ActiveQuery.run_once``,
``reconcile_internal``, ``reconcile_day``; see docs/runbook.md, "Crash recovery").

Everything is then proved from the database and the channel's statement, not from
logs: every trade the clients sent is final (paid with exactly one successful pay
order, or unpaid and closed), nothing is left processing or in transit, every user,
merchant, fee and channel-clearing balance is exactly what the clients' own record of
outcomes says it must be, the channel's statement matches our books trade by trade,
both reconciliations find no difference, no compensation task is stuck, and the trial
balance is zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from conftest import free_port, wait_http
from crash_checks import rows, stuck, verify
from crash_load import (  # tests/e2e/crash_load.py
    ADMIN,
    COMMON_KNOBS,
    FEE_BPS,
    FUNDING,
    KNOBS,
    OPERATOR_NODE,
    ORGS,
    SECRETS,
    USERS,
    Load,
    Merchant,
    Operator,
    Stack,
    make_plans,
    wait_for,
)

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def add_merchant(env: dict[str, str]) -> tuple[str, str]:
    """The merchant the clients pay, added through the CLI: ``(token, merchant id)``."""
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "runtime.cli",
            "merchant",
            "add",
            "--name",
            "crash shop",
            "--product",
            "goods:physical",
            "--pay-org",
            ORGS[0],
            "--pay-org",
            ORGS[1],
            "--fee-bps",
            str(FEE_BPS),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    fields_ = dict(line.split(":", 1) for line in added.stdout.strip().splitlines())
    return fields_["token"].strip(), fields_["merchant_id"].strip()


def fund_users(api: str, token: str) -> None:
    """Every user funded through the channel (a recharge paid by channel), waited for."""
    funder = Merchant(api, token, Load(), time.monotonic() + 60)
    for user in USERS:
        funder.call(
            "POST",
            "/v1/trades",
            {
                "out_trade_no": f"fund-{user}",
                "trade_type": "recharge",
                "amount": FUNDING,
                "currency": "CNY",
                "user_id": user,
                "order_type": "goods",
                "sub_type": "physical",
                "pay_org_no": ORGS[0],
            },
        )
        funder.call(
            "POST",
            f"/v1/trades/fund-{user}/pay",
            {"tools": [{"tool": "channel", "amount": FUNDING}]},
        )
    for user in USERS:
        funder.wait_trade(f"fund-{user}", {"paid"})
    funder.http.close()


def unhealthy_channels(sandbox: str) -> None:
    """Every channel made unhealthy and slow (KNOBS)."""
    for org in ORGS:
        r = httpx.put(
            f"{sandbox}/admin/knobs/{org}",
            json=COMMON_KNOBS | KNOBS[org],
            headers={"X-Sandbox-Admin": ADMIN},
        )
        assert r.status_code == 200, r.text


def start_clients(api: str, token: str) -> tuple[Load, list[threading.Thread], float]:
    """The merchant client threads, started on their plans: ``(load, threads, deadline)``."""
    load = Load()
    per_thread = make_plans()
    load.plans = [p for plans in per_thread for p in plans]
    deadline = time.monotonic() + 75
    clients = [
        threading.Thread(
            target=Merchant(api, token, load, deadline).run_all, args=(plans,), daemon=True
        )
        for plans in per_thread
    ]
    for c in clients:
        c.start()
    return load, clients, deadline


def channel_calls_in_flight(engine: sa.Engine) -> int:
    """Channel items processing, waited for (a little) until at least three are: the moment
    to strike, with channel calls and callbacks in flight."""
    in_flight = 0
    for _ in range(50):
        in_flight = rows(
            engine,
            """SELECT count(*) FROM pay_items
                                    WHERE status = 'processing' AND tool = 'channel'""",
        )[0][0]
        if in_flight >= 3:
            break
        time.sleep(0.05)
    return in_flight


def settled(engine: sa.Engine) -> bool:
    """Nothing processing, no open exception, no pending or running compensation task."""
    left = rows(
        engine,
        """
        SELECT (SELECT count(*) FROM pay_items WHERE status = 'processing')
             + (SELECT count(*) FROM pay_exceptions WHERE status = 'open')
             + (SELECT count(*) FROM compensation_tasks
                WHERE status IN ('pending', 'running'))""",
    )
    return left[0][0] == 0


def reconcile(pg_url: str, sandbox: str) -> tuple:
    """Both reconciliations at once, as the operator runs them after a crash, and the
    channel's statements: ``(internal, external counts by org, statements by org)``."""
    from paycore import PayCore
    from paycore.channels.gateway import build_gateway
    from paycore.ids import IdGenerator
    from paycore.recon import reconcile_day, reconcile_internal

    core = PayCore(pg_url, ids=IdGenerator(OPERATOR_NODE))
    gateway = build_gateway(sandbox, SECRETS)
    try:
        internal = reconcile_internal(core, window_s=3600, gateway=gateway, channel_sample=500)
        today = datetime.now(UTC).date()
        external = {org: reconcile_day(core, gateway, org, today).counts for org in ORGS}
        statement = {org: gateway.statement(org, today) for org in ORGS}
    finally:
        gateway.close()
        core.close()
    return internal, external, statement


def test_kill_9_mid_load_loses_and_doubles_nothing(pg_url, redis_url, tmp_path):
    started = time.monotonic()
    api_port, sandbox_port = free_port(), free_port()
    api, sandbox = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sandbox_port}"
    env = os.environ | {
        "PAYWATCH_DATABASE_URL": pg_url,
        "PAYWATCH_REDIS_URL": redis_url,
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_API_URL": api,
        "PAYWATCH_SANDBOX_URL": sandbox,
        "PAYWATCH_PAY_ORGS": ",".join(ORGS),
        "PAYWATCH_CHANNEL_SECRETS": ",".join(f"{o}={k}" for o, k in SECRETS.items()),
        "PAYWATCH_NOTIFY_SECRET": "crash-notify-secret",
    }
    token, mid = add_merchant(env)

    stack = Stack(tmp_path, env)
    operator: Operator | None = None
    engine = sa.create_engine(pg_url)
    try:
        stack.start(
            "sandbox", "sandbox", "--port", str(sandbox_port), "--admin-token", ADMIN, "--seed", "8"
        )
        stack.start("serve", "serve", "--port", str(api_port), "--log-level", "warning")
        stack.start("worker", "worker")
        wait_http(f"{sandbox}/healthz", stack.procs["sandbox"])
        wait_http(f"{api}/readyz", stack.procs["serve"])

        fund_users(api, token)  # through the channel while it is healthy
        unhealthy_channels(sandbox)

        load, clients, deadline = start_clients(api, token)

        # -- the crash ---------------------------------------------------------------------
        assert load.half_way.wait(40), "the load never got half-way"
        in_flight = channel_calls_in_flight(engine)
        stack.kill9("serve")
        stack.kill9("worker")
        killed_at = load.pays_sent
        time.sleep(1.5)  # long enough for the sandbox to give up on the callbacks it has
        stack.start("serve", "serve", "--port", str(api_port), "--log-level", "warning")
        stack.start("worker", "worker")
        wait_http(f"{api}/readyz", stack.procs["serve"])
        operator = Operator(pg_url, redis_url, sandbox)
        operator.thread.start()

        for c in clients:
            c.join(max(1.0, deadline - time.monotonic()))
        assert not load.errors, (load.errors, stuck(engine, sandbox))
        assert len(load.outcomes) == len(load.plans), "some clients did not finish"

        # -- recovery: compensation drains (the worker), then reconciliation ---------------
        wait_for(
            lambda: settled(engine),
            45,
            "compensation to drain (processing items, open exceptions, tasks)",
        )
        operator.close()
        internal, external, statement = reconcile(pg_url, sandbox)  # the operator has closed
        verify(engine, pg_url, mid, load, internal, external, statement)
        facts = {
            "exceptions": dict(
                rows(engine, "SELECT kind, count(*) FROM pay_exceptions GROUP BY 1")
            ),
            "tasks": dict(rows(engine, "SELECT kind, count(*) FROM compensation_tasks GROUP BY 1")),
            "active_query": operator.active.stats.__dict__,
        }
    finally:
        if operator is not None:
            operator.close()
        stack.stop_all()
        engine.dispose()
    report = {
        "seconds": round(time.monotonic() - started, 1),
        "trades": len(load.plans),
        "paid": sum(o.paid for o in load.outcomes.values()),
        "refunds": Counter(o.refund_status for o in load.outcomes.values() if o.refund_status),
        "killed_after_pays": killed_at,
        "processing_at_kill": in_flight,
        "client_retries": dict(load.retries),
        **facts,
    }
    print("crash test:", json.dumps(report, default=str))
    assert "Traceback" not in stack.log("serve") + stack.log("worker"), stack.log("worker")[-3000:]
