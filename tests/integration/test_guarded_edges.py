"""Every edge of the seeded dependency map has a guarded call site.

A real platform (API, sandbox channel, worker jobs, PostgreSQL and Redis) runs through
trade create, channel and balance pay, callbacks, refunds, notification delivery, the
active query, compensation and reconciliation; a recorder on the guard collects every
``(caller, resource)`` the guard saw. An edge of the map no call reached is a dependency
the code calls unguarded (or not at all): the test names it.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx
from api_stack import ADMIN, Stack
from conftest import LiveServer, free_port

from stability.depmap_seed import default_map

ORGS = ("SANDBOX_A", "SANDBOX_B")


class Edges:
    """A guard recorder: every (caller, resource) pair with an outcome."""

    def __init__(self) -> None:
        self.seen: dict[tuple[str, str], set[str]] = {}

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        self.seen.setdefault((caller, resource), set()).add(outcome)

    def breaker_changed(self, *a: Any) -> None:
        pass


class RedisStack(Stack):
    """:class:`api_stack.Stack` with the Redis trade lock (the map's redis edges)."""

    def __init__(self, db_url: str, redis_url: str) -> None:  # noqa: D107
        from runtime.bootstrap import build_platform
        from runtime.settings import Settings
        from simulator.sandbox import create_sandbox_app
        from simulator.sandbox_config import SandboxConfig

        self.secrets = {o: secrets.token_urlsafe(24) for o in ORGS}
        coupon_secret = secrets.token_urlsafe(24)  # the sandbox hosts the coupon service
        self.sandbox = LiveServer(
            create_sandbox_app(
                SandboxConfig(
                    secrets=dict(self.secrets),
                    admin_token=ADMIN,
                    seed=7,
                    coupon_secret=coupon_secret,
                )
            )
        )
        api_port = free_port()
        settings = Settings(
            database_url=db_url,
            redis_url=redis_url,
            coupon_secret_value=coupon_secret,
            api_url=f"http://127.0.0.1:{api_port}",
            sandbox_url=self.sandbox.url,
            pay_orgs=ORGS,
            channel_secrets=dict(self.secrets),
        )
        self.platform = build_platform(settings)
        self.core = self.platform.paycore
        self.api = LiveServer(self.platform.api_app(), port=api_port)
        ob = self.core.merchants.onboard(
            "edge shop",
            products=[("goods", "physical")],
            pay_orgs=list(ORGS),
            fee_bps=100,
            notify_url=f"{self.sandbox.url}/merchant-hook",  # answers 404: still a POST
        )
        self.mid, self.token = ob.merchant.merchant_id, ob.token


def _post(st: Stack, path: str, body: dict) -> httpx.Response:
    r = st.http.post(path, json=body)
    assert r.status_code == 200, r.text
    return r


def _paid(d: dict) -> bool:
    return d["trade"]["status"] == "paid"


def _links(st: Stack, org: str) -> None:
    """trade create, channel pay + callback, recharge + balance pay, refund."""
    n = f"{org}-{secrets.token_hex(3)}"
    st.trade(f"c-{n}", 1000, pay_org_no=org)
    _post(st, f"/v1/trades/c-{n}/pay", {"tools": [{"tool": "channel", "amount": 1000}]})
    assert _paid(st.wait_for(f"c-{n}", _paid)), "channel pay never settled"
    st.trade(f"r-{n}", 5000, "recharge", pay_org_no=org)
    _post(st, f"/v1/trades/r-{n}/pay", {"tools": [{"tool": "channel", "amount": 5000}]})
    assert _paid(st.wait_for(f"r-{n}", _paid))
    st.trade(f"b-{n}", 700, pay_org_no=org)
    _post(st, f"/v1/trades/b-{n}/pay", {"tools": [{"tool": "balance", "amount": 700}]})
    _post(st, f"/v1/trades/c-{n}/refunds", {"out_refund_no": f"rf-{n}", "amount": 400})
    st.wait_for(f"c-{n}", lambda d: bool(d["refunds"]) and _paid(d["refunds"][0]))


def _coupons(st: Stack) -> None:
    """A coupon + balance pay refunded in full (redeem, release as link.refund), and a
    coupon + channel pay the channel fails (compensation gives the coupon back)."""
    n = secrets.token_hex(3)

    def issue(code: str) -> None:
        body = {"merchant_id": st.mid, "user_id": "u1", "amount": 200, "currency": "CNY"}
        r = httpx.post(
            f"{st.sandbox.url}/coupons/admin/issue",
            json={**body, "code": code},
            headers={"X-Sandbox-Admin": ADMIN},
        )
        assert r.status_code == 200, r.text

    issue(f"CB{n}")
    st.trade(f"cb-{n}", 700, pay_org_no=ORGS[0])
    tools = [{"tool": "balance", "amount": 500}, {"tool": "coupon", "amount": 200, "ref": f"CB{n}"}]
    _post(st, f"/v1/trades/cb-{n}/pay", {"tools": tools})
    _post(st, f"/v1/trades/cb-{n}/refunds", {"out_refund_no": f"rcb-{n}", "amount": 700})
    issue(f"CF{n}")
    st.knobs(ORGS[0], fail_rate=1.0)
    st.trade(f"cf-{n}", 700, pay_org_no=ORGS[0])
    tools = [{"tool": "channel", "amount": 500}, {"tool": "coupon", "amount": 200, "ref": f"CF{n}"}]
    _post(st, f"/v1/trades/cf-{n}/pay", {"tools": tools})
    st.wait_for(f"cf-{n}", lambda d: d["pay_orders"][0]["status"] != "processing")
    st.knobs(ORGS[0], fail_rate=0.0)


def _async_posting(st: Stack, queue: Any) -> None:
    """A ``ledger_posting`` compensation task: the ledger's own database edge."""
    from paycore.context import BizContext
    from paycore.jobs import LEDGER_POSTING, ledger_posting_payload
    from paycore.ledger import credit, debit, merchant_payable, user_balance

    legs = [debit(merchant_payable(st.mid, "CNY"), 5), credit(user_balance(st.mid, "u1", "CNY"), 5)]
    ctx = BizContext(st.mid, "goods", "physical", ORGS[0])
    payload = ledger_posting_payload(
        biz_type="bonus", biz_key="edges", ctx=ctx, currency="CNY", legs=legs
    )
    queue.enqueue(None, LEDGER_POSTING, "bonus:edges", payload)


def _jobs(st: Stack, stuck: list[str]) -> None:
    """The worker's jobs once each: notifications, compensation, active query, recon."""
    from paycore.channels.guarded import GuardedGateway
    from paycore.jobs.active_query import ActiveQuery
    from paycore.recon import reconcile_day, reconcile_internal
    from runtime.worker import as_caller, build_worker, worker_jobs

    platform, core = st.platform, st.core
    gateway = platform.front.gateway
    jobs, closables = worker_jobs(platform, "edges-worker")
    try:
        for fn, _, name in jobs:
            if name in ("notifications", "summary_posting"):
                fn()
    finally:
        for c in closables:
            c.close()
    worker = build_worker(platform, worker_id="edges-worker")
    _async_posting(st, worker.queue)
    for _ in range(3):
        as_caller("job.compensation", worker.handlers.enqueue_open_exceptions)()
        as_caller("job.compensation", worker.run_once)()
    query = ActiveQuery(
        core, GuardedGateway(gateway, core.guard, "job.active_query"), first_after_s=0
    )
    assert as_caller("job.active_query", query.run_once)() >= len(stuck)
    recon = GuardedGateway(gateway, core.guard, "job.reconciliation")
    as_caller("job.reconciliation", lambda: reconcile_internal(core, gateway=recon))()
    for org in ORGS:
        day = datetime.now(UTC).date()
        as_caller("job.reconciliation", lambda o=org, d=day: reconcile_day(core, recon, o, d))()


def test_every_edge_of_the_seeded_map_has_a_guarded_call_site(pg_url, redis_url):
    edges = Edges()
    with RedisStack(pg_url, redis_url) as st:
        guard = st.platform.stability.guard
        assert guard.map.to_dict() == default_map(ORGS).to_dict()
        guard.recorders.append(edges)
        for org in ORGS:
            _links(st, org)
        _coupons(st)
        for org in ORGS:  # a settlement one unit short: a full-refund exception
            st.knobs(org, amount_mismatch_rate=1.0)
            no = f"short-{org}"
            st.trade(no, 500, pay_org_no=org)
            _post(st, f"/v1/trades/{no}/pay", {"tools": [{"tool": "channel", "amount": 500}]})
            st.wait_for(no, lambda d: d["pay_orders"][0]["status"] != "processing")
            st.knobs(org, amount_mismatch_rate=0.0)
        stuck = []
        for org in ORGS:  # a pay whose callback never comes: the active query's work
            st.knobs(org, callback_delay_ms=600_000)
            no = f"stuck-{org}"
            st.trade(no, 300, pay_org_no=org)
            _post(st, f"/v1/trades/{no}/pay", {"tools": [{"tool": "channel", "amount": 300}]})
            stuck.append(no)
        time.sleep(0.5)
        _jobs(st, stuck)
    wanted = {(e.caller, e.callee) for e in default_map(ORGS).edges}
    missing = sorted(wanted - set(edges.seen))
    assert not missing, "edges with no guarded call site: " + ", ".join(
        f"{c} -> {r}" for c, r in missing
    )
    for caller in ("link.pay", "link.refund", "job.compensation"):  # redeemed and released
        assert edges.seen[(caller, "coupon")] == {"pass"}, caller
