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
from collections import Counter, defaultdict
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
from conftest import free_port, wait_http
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


def stuck(engine: sa.Engine, sandbox: str) -> list[tuple]:
    """Channel items still processing, with what the channel says about them."""
    from paycore.channels.gateway import build_gateway

    gateway = build_gateway(sandbox, SECRETS)
    try:
        return [
            (
                r.pay_org_no,
                r.channel_txn_no,
                r.pay_type,
                r.query_attempts,
                r.manual,
                gateway.query_status(r.pay_org_no, r.channel_txn_no).status,
            )
            for r in rows(
                engine,
                """
                    SELECT i.pay_org_no, i.channel_txn_no, o.pay_type, i.query_attempts, i.manual
                    FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
                    WHERE i.status = 'processing' AND i.tool = 'channel'""",
            )
        ]
    finally:
        gateway.close()


def transit_residue(engine: sa.Engine) -> dict:
    """What is left in platform transit, trade by trade, with the trades' entries,
    items and exceptions: the evidence a failed money check needs."""
    left = rows(
        engine,
        """
        SELECT e.trade_id, sum(l.amount) AS net FROM journal_legs l
        JOIN journal_entries e ON e.id = l.entry_id JOIN accounts a ON a.id = l.account_id
        WHERE a.owner_type = 'platform' AND a.owner_id = 'transit'
        GROUP BY e.trade_id HAVING sum(l.amount) <> 0""",
    )
    out = {}
    for trade_id, net in left:
        out[trade_id] = {
            "net": net,
            "entries": rows(
                engine,
                """
                SELECT e.biz_type, e.biz_key, e.created_at, a.owner_id, l.amount
                FROM journal_entries e JOIN journal_legs l ON l.entry_id = e.id
                JOIN accounts a ON a.id = l.account_id WHERE e.trade_id = :t
                ORDER BY e.created_at""",
                t=trade_id,
            ),
            "items": rows(
                engine,
                """
                SELECT i.id, o.id, o.pay_type, o.status, i.tool, i.status, i.amount,
                       i.settled_amount, i.channel_txn_no FROM pay_items i
                JOIN pay_orders o ON o.id = i.pay_order_id WHERE o.trade_id = :t""",
                t=trade_id,
            ),
            "exceptions": rows(
                engine,
                """
                SELECT id, kind, biz_key, pay_item_id, amount_taken, status FROM pay_exceptions
                WHERE trade_id = :t""",
                t=trade_id,
            ),
        }
    return out


def rows(engine: sa.Engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


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
    token, mid = fields_["token"].strip(), fields_["merchant_id"].strip()

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

        # fund the users through the channel while it is healthy
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

        # unhealthy, slow channels (KNOBS)
        for org in ORGS:
            r = httpx.put(
                f"{sandbox}/admin/knobs/{org}",
                json=COMMON_KNOBS | KNOBS[org],
                headers={"X-Sandbox-Admin": ADMIN},
            )
            assert r.status_code == 200, r.text

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

        # -- the crash ---------------------------------------------------------------------
        assert load.half_way.wait(40), "the load never got half-way"
        in_flight = 0
        for _ in range(50):  # strike while channel calls and callbacks are in flight
            in_flight = rows(
                engine,
                """SELECT count(*) FROM pay_items
                                        WHERE status = 'processing' AND tool = 'channel'""",
            )[0][0]
            if in_flight >= 3:
                break
            time.sleep(0.05)
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
        def settled() -> bool:
            left = rows(
                engine,
                """
                SELECT (SELECT count(*) FROM pay_items WHERE status = 'processing')
                     + (SELECT count(*) FROM pay_exceptions WHERE status = 'open')
                     + (SELECT count(*) FROM compensation_tasks
                        WHERE status IN ('pending', 'running'))""",
            )
            return left[0][0] == 0

        wait_for(settled, 45, "compensation to drain (processing items, open exceptions, tasks)")
        operator.close()
        from paycore import PayCore
        from paycore.channels.gateway import build_gateway
        from paycore.ids import IdGenerator
        from paycore.recon import reconcile_day, reconcile_internal

        core = PayCore(pg_url, ids=IdGenerator(OPERATOR_NODE))  # the operator has closed
        gateway = build_gateway(sandbox, SECRETS)
        try:
            internal = reconcile_internal(core, window_s=3600, gateway=gateway, channel_sample=500)
            today = datetime.now(UTC).date()
            external = {org: reconcile_day(core, gateway, org, today).counts for org in ORGS}
            statement = {org: gateway.statement(org, today) for org in ORGS}
        finally:
            gateway.close()
            core.close()
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


def verify(engine, pg_url, mid, load: Load, internal, external, statement) -> None:
    from paycore import Database
    from paycore.ledger import (
        balance_of,
        channel_clearing,
        fee_income,
        merchant_payable,
        platform_transit,
        trial_balance,
        user_balance,
    )
    from paycore.money import fee_for

    plans = {p.no: p for p in load.plans}
    # every trade the clients sent exists once, and is final the way the client saw it
    trades = {
        r.out_trade_no: r
        for r in rows(
            engine,
            """
        SELECT id, out_trade_no, status, amount, paid_amount, refunded_amount FROM trades
        WHERE trade_type = 'instant'""",
        )
    }
    assert set(trades) == set(plans)
    for no, p in plans.items():
        t, o = trades[no], load.outcomes[no]
        assert t.status == ("paid" if o.paid else "closed"), (no, t.status, o)
        want_refunded = p.refund if o.refund_status == "paid" else 0
        assert (t.paid_amount, t.refunded_amount) == ((p.amount if o.paid else 0), want_refunded), (
            no
        )
    # paid exactly once: one successful pay order per paid trade, none per unpaid one
    success = Counter(
        r.trade_id
        for r in rows(
            engine,
            """
        SELECT trade_id FROM pay_orders WHERE pay_type = 'pay' AND status = 'success'""",
        )
    )
    for no, t in trades.items():
        assert success[t.id] == (1 if load.outcomes[no].paid else 0), no
    assert not rows(engine, "SELECT id FROM pay_orders WHERE status = 'processing'")
    assert not rows(engine, "SELECT id FROM pay_items WHERE status = 'processing' OR manual")
    # one ledger posting per business event: each successful item and order posted once
    missing = rows(
        engine,
        """
        SELECT i.id FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
        WHERE i.status = 'success' AND NOT EXISTS (SELECT 1 FROM journal_entries e
          WHERE e.biz_key = CAST(i.id AS TEXT)
            AND e.biz_type = CASE o.pay_type WHEN 'refund' THEN 'refund_item'
                                             ELSE 'pay_item' END)
        UNION ALL
        SELECT o.id FROM pay_orders o WHERE o.status = 'success' AND o.pay_type <> 'refund'
          AND NOT EXISTS (SELECT 1 FROM journal_entries e
                          WHERE e.biz_type = 'pay_complete' AND e.biz_key = CAST(o.id AS TEXT))
        """,
    )
    assert not missing, missing
    stray = rows(
        engine,
        """
        SELECT e.biz_type, e.biz_key FROM journal_entries e
        WHERE e.biz_type = 'pay_complete' AND NOT EXISTS (SELECT 1 FROM pay_orders o
          WHERE CAST(o.id AS TEXT) = e.biz_key AND o.status = 'success')""",
    )
    assert not stray, stray  # no completion posted for an order that did not succeed
    # the exceptions the crash and the failing channel caused were all refunded in full
    exceptions = rows(engine, "SELECT kind, status, amount_taken FROM pay_exceptions")
    assert all(e.status == "resolved" for e in exceptions), exceptions
    # ... and only the ones the channels' knobs cause: a repeated callback is no new case
    assert {e.kind for e in exceptions} <= {"partial_payment", "amount_mismatch"}, exceptions
    assert not rows(
        engine,
        """SELECT id FROM compensation_tasks WHERE status <> 'done'
                               OR (status = 'running' AND lease_until < now())""",
    )

    # money: every balance is what the clients' own record of outcomes says
    cur = "CNY"
    user_want = dict.fromkeys(USERS, FUNDING)
    merchant_want = fee_want = channel_want = 0
    for no, p in plans.items():
        o = load.outcomes[no]
        if not o.paid:
            continue  # whatever the failed pay took was refunded: it nets to zero
        fee = fee_for(p.amount, FEE_BPS)
        merchant_want += p.amount - fee
        fee_want += fee
        user_want[p.user] -= p.balance_part
        channel_want += p.amount - p.balance_part
        if o.refund_status == "paid":  # a refund returns the balance part first
            back_to_balance = min(p.refund, p.balance_part)
            user_want[p.user] += back_to_balance
            channel_want -= p.refund - back_to_balance
            merchant_want -= p.refund
    channel_want += FUNDING * len(USERS)
    db = Database(pg_url)
    try:
        with db.session() as s:
            got_users = {u: balance_of(s, user_balance(mid, u, cur)) for u in USERS}
            got = (
                balance_of(s, merchant_payable(mid, cur)),
                balance_of(s, fee_income(cur)),
                sum(balance_of(s, channel_clearing(org, cur)) for org in ORGS),
                balance_of(s, platform_transit(cur)),
            )
        assert got_users == user_want
        assert got == (merchant_want, fee_want, channel_want, 0), (got, transit_residue(engine))
        tb = trial_balance(db)
        assert tb.ok and tb.legs_total == {cur: 0}, tb
    finally:
        db.dispose()

    # the channel's record, trade by trade: what it kept equals what we say was paid
    items = {
        r.channel_txn_no: r
        for r in rows(
            engine,
            """
        SELECT i.id, i.channel_txn_no, o.trade_id, o.pay_type, t.origin_trade_id
        FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
        JOIN trades t ON t.id = o.trade_id WHERE i.tool = 'channel'""",
        )
    }
    by_item = {str(r.id): r for r in items.values()}
    kept: dict[int, int] = defaultdict(int)
    for line in (ln for lines in statement.values() for ln in lines):
        txn = line.channel_txn_no
        if txn.startswith("x"):  # a compensation refund of one of our pay items
            it, sign = by_item[txn[1:]], -1
        else:
            it = items[txn]
            sign = -1 if it.pay_type == "refund" else 1
        kept[it.origin_trade_id or it.trade_id] += sign * line.amount
    ours = {
        t.id: (plans[no].amount - plans[no].balance_part if load.outcomes[no].paid else 0)
        - (
            plans[no].refund - min(plans[no].refund, plans[no].balance_part)
            if load.outcomes[no].refund_status == "paid"
            else 0
        )
        for no, t in trades.items()
    }
    assert {k: v for k, v in kept.items() if k in ours and v} == {
        k: v for k, v in ours.items() if v
    }
    assert internal.counts == {}, internal.counts
    assert external == dict.fromkeys(ORGS, {}), external
    assert not rows(engine, "SELECT kind, ref, note FROM recon_differences")
