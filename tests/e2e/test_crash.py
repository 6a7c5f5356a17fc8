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

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from conftest import free_port, wait_http

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

SECRETS = {"SANDBOX_A": "crash-test-channel-secret-A", "SANDBOX_B": "crash-test-channel-secret-B"}
ORGS = tuple(SECRETS)
#: A fails 12 % of its transactions (pays and refunds); B settles 8 % of its pays for one
#: minor unit more than asked (amount mismatch: refunded in full through B by compensation).
#: Both answer 6 % of sends with a 503 before booking them, are slow, and call back twice.
KNOBS = {
    "SANDBOX_A": {"fail_rate": 0.12},
    "SANDBOX_B": {"amount_mismatch_rate": 0.08},
}
COMMON_KNOBS = {"error_rate": 0.06, "latency_ms": 30.0, "callback_delay_ms": 400.0,
                "duplicate_callbacks": 1}  # fmt: skip
ADMIN = "crash-admin"
FEE_BPS = 60
USERS = [f"u{i}" for i in range(4)]
FUNDING = 500_000  # per user, by a channel recharge before the load
THREADS, PER_THREAD = 6, 14  # 84 trades
BUSY = {429, 500, 502, 503, 504}  # retry: the platform is down, restarting or shedding


@dataclass
class Plan:
    no: str
    user: str
    kind: str  # channel | balance | combo
    amount: int
    refund: int  # 0: no refund
    org: str

    @property
    def tools(self) -> list[dict]:
        if self.kind == "channel":
            return [{"tool": "channel", "amount": self.amount}]
        if self.kind == "balance":
            return [{"tool": "balance", "amount": self.amount}]
        return [{"tool": "balance", "amount": self.balance_part},
                {"tool": "channel", "amount": self.amount - self.balance_part}]

    @property
    def balance_part(self) -> int:
        return {"channel": 0, "balance": self.amount, "combo": self.amount * 3 // 10}[self.kind]


@dataclass
class Outcome:
    paid: bool = False
    refund_status: str = ""  # paid | closed | "" (none)


@dataclass
class Load:
    """What the clients did and saw; shared by the client threads."""

    plans: list[Plan] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    pays_sent: int = 0
    retries: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    half_way: threading.Event = field(default_factory=threading.Event)


def make_plans() -> list[list[Plan]]:
    rng = random.Random(8)
    kinds = ("channel", "balance", "combo")
    out = []
    for t in range(THREADS):
        plans = []
        for j in range(PER_THREAD):
            kind = kinds[(t + j) % 3]
            amount = rng.randrange(1_000, 20_000)
            refund = 0
            if kind != "balance" and j % 3 == 0:
                refund = amount * 6 // 10  # a combo refund also reaches its channel part
            org = ORGS[(t * PER_THREAD + j) % len(ORGS)]
            plans.append(Plan(f"k{t}-{j}", USERS[(t + j) % len(USERS)], kind, amount, refund, org))
        out.append(plans)
    return out


class Merchant:
    """A merchant's HTTP client that retries each request until it has a definite answer."""

    def __init__(self, base: str, token: str, load: Load, deadline: float) -> None:
        self.http = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"},
                                 timeout=5)
        self.load = load
        self.deadline = deadline

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        while True:
            if time.monotonic() > self.deadline:
                raise AssertionError(f"{method} {path}: no answer before the deadline")
            try:
                r = self.http.request(method, path, json=body)
            except httpx.TransportError as exc:  # the platform died mid-request, or is down
                self._retry(type(exc).__name__)
                continue
            code = r.json().get("error", {}).get("code") if r.status_code >= 400 else None
            if r.status_code in BUSY or code == "order_busy":  # a dead holder's lock: wait
                self._retry(str(code or r.status_code))
                continue
            if r.status_code != 200:
                raise AssertionError(f"{method} {path} -> {r.status_code} {r.text}")
            return r.json()

    def _retry(self, why: str) -> None:
        with self.load.lock:
            self.load.retries[why] += 1
        time.sleep(0.2)

    def wait_trade(self, no: str, done: set[str]) -> dict:
        while True:
            detail = self.call("GET", f"/v1/trades/{no}")
            if detail["trade"]["status"] in done:
                return detail
            time.sleep(0.15)

    def run(self, p: Plan) -> Outcome:
        self.call("POST", "/v1/trades", {
            "out_trade_no": p.no, "trade_type": "instant", "amount": p.amount,
            "currency": "CNY", "user_id": p.user, "order_type": "goods",
            "sub_type": "physical", "pay_org_no": p.org})  # fmt: skip
        with self.load.lock:
            self.load.pays_sent += 1
            if self.load.pays_sent >= len(self.load.plans) // 2:
                self.load.half_way.set()
        self.call("POST", f"/v1/trades/{p.no}/pay", {"tools": p.tools})
        # created: the pay failed (the trade is open to pay again; this merchant closes it)
        detail = self.wait_trade(p.no, {"paid", "created"})
        if detail["trade"]["status"] == "created":
            assert [po["status"] for po in detail["pay_orders"]] == ["failed"], detail
            self.call("POST", f"/v1/trades/{p.no}/close")
            return Outcome(paid=False)
        out = Outcome(paid=True)
        if p.refund:
            self.call("POST", f"/v1/trades/{p.no}/refunds",
                      {"out_refund_no": f"{p.no}-r", "amount": p.refund})  # fmt: skip
            refund = self.wait_trade(f"{p.no}-r", {"paid", "closed"})
            out.refund_status = refund["trade"]["status"]
        return out

    def run_all(self, plans: list[Plan]) -> None:
        try:
            for p in plans:
                outcome = self.run(p)
                with self.load.lock:
                    self.load.outcomes[p.no] = outcome
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            with self.load.lock:
                self.load.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.http.close()


class Stack:
    """The platform's processes, started through the CLI."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: Counter = Counter()

    def start(self, name: str, *args: str) -> subprocess.Popen:
        self.starts[name] += 1
        log = (self.tmp / f"{name}.{self.starts[name]}.log").open("w")
        env = self.env | {"PAYWATCH_NODE_ID": str(10 * len(self.starts) + self.starts[name])}
        proc = subprocess.Popen([sys.executable, "-m", "console.cli", *args], env=env,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        self.procs[name] = proc
        return proc

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook of any kind runs
        assert proc.wait(10) == -signal.SIGKILL

    def log(self, name: str) -> str:
        return "".join((self.tmp / f"{name}.{n}.log").read_text()
                       for n in range(1, self.starts[name] + 1))  # fmt: skip

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


class Operator:
    """What the on-call engineer runs after the restart (docs/runbook.md, crash recovery):
    the active query of channel items stuck in processing, at once and then every
    second, instead of waiting for the worker's 30 s timer and 60 s first delay."""

    def __init__(self, pg_url: str, redis_url: str, sandbox_url: str) -> None:
        from paycore import PayCore
        from paycore.channels.gateway import build_gateway
        from paycore.jobs.active_query import ActiveQuery
        from paycore.locks import make_lock

        self.core = PayCore(pg_url, lock=make_lock(redis_url))
        self.gateway = build_gateway(sandbox_url, SECRETS)
        self.active = ActiveQuery(self.core, self.gateway, first_after_s=2, interval_s=1,
                                  max_attempts=60)  # fmt: skip
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(Exception):  # retried next second, like the scheduled job
                self.active.run_once()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)
        self.gateway.close()
        self.core.close()


def stuck(engine: sa.Engine, sandbox: str) -> list[tuple]:
    """Channel items still processing, with what the channel says about them."""
    from paycore.channels.gateway import build_gateway

    gateway = build_gateway(sandbox, SECRETS)
    try:
        return [(r.pay_org_no, r.channel_txn_no, r.pay_type, r.query_attempts, r.manual,
                 gateway.query_status(r.pay_org_no, r.channel_txn_no).status)
                for r in rows(engine, """
                    SELECT i.pay_org_no, i.channel_txn_no, o.pay_type, i.query_attempts, i.manual
                    FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
                    WHERE i.status = 'processing' AND i.tool = 'channel'""")]  # fmt: skip
    finally:
        gateway.close()


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
    added = subprocess.run([sys.executable, "-m", "console.cli", "merchant", "add", "--name",
                            "crash shop", "--product", "goods:physical", "--pay-org", ORGS[0],
                            "--pay-org", ORGS[1], "--fee-bps", str(FEE_BPS)],
                           env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert added.returncode == 0, added.stderr
    fields_ = dict(line.split(":", 1) for line in added.stdout.strip().splitlines())
    token, mid = fields_["token"].strip(), fields_["merchant_id"].strip()

    stack = Stack(tmp_path, env)
    operator: Operator | None = None
    engine = sa.create_engine(pg_url)
    try:
        stack.start("sandbox", "sandbox", "--port", str(sandbox_port), "--admin-token", ADMIN,
                    "--seed", "8")  # fmt: skip
        stack.start("serve", "serve", "--port", str(api_port), "--log-level", "warning")
        stack.start("worker", "worker")
        wait_http(f"{sandbox}/healthz", stack.procs["sandbox"])
        wait_http(f"{api}/readyz", stack.procs["serve"])

        # fund the users through the channel while it is healthy
        funder = Merchant(api, token, Load(), time.monotonic() + 60)
        for user in USERS:
            funder.call("POST", "/v1/trades", {
                "out_trade_no": f"fund-{user}", "trade_type": "recharge", "amount": FUNDING,
                "currency": "CNY", "user_id": user, "order_type": "goods",
                "sub_type": "physical", "pay_org_no": ORGS[0]})  # fmt: skip
            funder.call("POST", f"/v1/trades/fund-{user}/pay",
                        {"tools": [{"tool": "channel", "amount": FUNDING}]})  # fmt: skip
        for user in USERS:
            funder.wait_trade(f"fund-{user}", {"paid"})
        funder.http.close()

        # unhealthy, slow channels (KNOBS)
        for org in ORGS:
            r = httpx.put(f"{sandbox}/admin/knobs/{org}", json=COMMON_KNOBS | KNOBS[org],
                          headers={"X-Sandbox-Admin": ADMIN})  # fmt: skip
            assert r.status_code == 200, r.text

        load = Load()
        per_thread = make_plans()
        load.plans = [p for plans in per_thread for p in plans]
        deadline = time.monotonic() + 75
        clients = [threading.Thread(target=Merchant(api, token, load, deadline).run_all,
                                    args=(plans,), daemon=True) for plans in per_thread]  # fmt: skip
        for c in clients:
            c.start()

        # -- the crash ---------------------------------------------------------------------
        assert load.half_way.wait(40), "the load never got half-way"
        in_flight = 0
        for _ in range(50):  # strike while channel calls and callbacks are in flight
            in_flight = rows(engine, """SELECT count(*) FROM pay_items
                                        WHERE status = 'processing' AND tool = 'channel'""")[0][0]
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
            left = rows(engine, """
                SELECT (SELECT count(*) FROM pay_items WHERE status = 'processing')
                     + (SELECT count(*) FROM pay_exceptions WHERE status = 'open')
                     + (SELECT count(*) FROM compensation_tasks
                        WHERE status IN ('pending', 'running'))""")  # fmt: skip
            return left[0][0] == 0

        wait_for(settled, 45, "compensation to drain (processing items, open exceptions, tasks)")
        operator.close()
        from paycore import PayCore
        from paycore.channels.gateway import build_gateway
        from paycore.recon import reconcile_day, reconcile_internal

        core = PayCore(pg_url)
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
            "exceptions": dict(rows(engine, "SELECT kind, count(*) FROM pay_exceptions GROUP BY 1")),
            "tasks": dict(rows(engine, "SELECT kind, count(*) FROM compensation_tasks GROUP BY 1")),
            "active_query": operator.active.stats.__dict__,
        }  # fmt: skip
    finally:
        if operator is not None:
            operator.close()
        stack.stop_all()
        engine.dispose()
    report = {
        "seconds": round(time.monotonic() - started, 1), "trades": len(load.plans),
        "paid": sum(o.paid for o in load.outcomes.values()),
        "refunds": Counter(o.refund_status for o in load.outcomes.values() if o.refund_status),
        "killed_after_pays": killed_at, "processing_at_kill": in_flight,
        "client_retries": dict(load.retries), **facts,
    }  # fmt: skip
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
    trades = {r.out_trade_no: r for r in rows(engine, """
        SELECT id, out_trade_no, status, amount, paid_amount, refunded_amount FROM trades
        WHERE trade_type = 'instant'""")}  # fmt: skip
    assert set(trades) == set(plans)
    for no, p in plans.items():
        t, o = trades[no], load.outcomes[no]
        assert t.status == ("paid" if o.paid else "closed"), (no, t.status, o)
        want_refunded = p.refund if o.refund_status == "paid" else 0
        assert (t.paid_amount, t.refunded_amount) == ((p.amount if o.paid else 0),
                                                      want_refunded), no  # fmt: skip
    # paid exactly once: one successful pay order per paid trade, none per unpaid one
    success = Counter(r.trade_id for r in rows(engine, """
        SELECT trade_id FROM pay_orders WHERE pay_type = 'pay' AND status = 'success'"""))
    for no, t in trades.items():
        assert success[t.id] == (1 if load.outcomes[no].paid else 0), no
    assert not rows(engine, "SELECT id FROM pay_orders WHERE status = 'processing'")
    assert not rows(engine, "SELECT id FROM pay_items WHERE status = 'processing' OR manual")
    # one ledger posting per business event: each successful item and order posted once
    missing = rows(engine, """
        SELECT i.id FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
        WHERE i.status = 'success' AND NOT EXISTS (SELECT 1 FROM journal_entries e
          WHERE e.biz_key = CAST(i.id AS TEXT)
            AND e.biz_type = CASE o.pay_type WHEN 'refund' THEN 'refund_item'
                                             ELSE 'pay_item' END)
        UNION ALL
        SELECT o.id FROM pay_orders o WHERE o.status = 'success' AND o.pay_type <> 'refund'
          AND NOT EXISTS (SELECT 1 FROM journal_entries e
                          WHERE e.biz_type = 'pay_complete' AND e.biz_key = CAST(o.id AS TEXT))
        """)  # fmt: skip
    assert not missing, missing
    stray = rows(engine, """
        SELECT e.biz_type, e.biz_key FROM journal_entries e
        WHERE e.biz_type = 'pay_complete' AND NOT EXISTS (SELECT 1 FROM pay_orders o
          WHERE CAST(o.id AS TEXT) = e.biz_key AND o.status = 'success')""")  # fmt: skip
    assert not stray, stray  # no completion posted for an order that did not succeed
    # the exceptions the crash and the failing channel caused were all refunded in full
    exceptions = rows(engine, "SELECT kind, status, amount_taken FROM pay_exceptions")
    assert all(e.status == "resolved" for e in exceptions), exceptions
    # ... and only the ones the channels' knobs cause: a repeated callback is no new case
    assert {e.kind for e in exceptions} <= {"partial_payment", "amount_mismatch"}, exceptions
    assert not rows(engine, """SELECT id FROM compensation_tasks WHERE status <> 'done'
                               OR (status = 'running' AND lease_until < now())""")

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
            got_users = {u: balance_of(s, user_balance(u, cur)) for u in USERS}
            got = (balance_of(s, merchant_payable(mid, cur)), balance_of(s, fee_income(cur)),
                   sum(balance_of(s, channel_clearing(org, cur)) for org in ORGS),
                   balance_of(s, platform_transit(cur)))  # fmt: skip
        assert got_users == user_want
        assert got == (merchant_want, fee_want, channel_want, 0), got
        tb = trial_balance(db)
        assert tb.ok and tb.legs_total == {cur: 0}, tb
    finally:
        db.dispose()

    # the channel's record, trade by trade: what it kept equals what we say was paid
    items = {r.channel_txn_no: r for r in rows(engine, """
        SELECT i.id, i.channel_txn_no, o.trade_id, o.pay_type, t.origin_trade_id
        FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
        JOIN trades t ON t.id = o.trade_id WHERE i.tool = 'channel'""")}  # fmt: skip
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
    ours = {t.id: (plans[no].amount - plans[no].balance_part if load.outcomes[no].paid else 0)
            - (plans[no].refund - min(plans[no].refund, plans[no].balance_part)
               if load.outcomes[no].refund_status == "paid" else 0)
            for no, t in trades.items()}  # fmt: skip
    assert {k: v for k, v in kept.items() if k in ours and v} == {k: v for k, v in ours.items() if v}
    assert internal.counts == {}, internal.counts
    assert external == dict.fromkeys(ORGS, {}), external
    assert not rows(engine, "SELECT kind, ref, note FROM recon_differences")
