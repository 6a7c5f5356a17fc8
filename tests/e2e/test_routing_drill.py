"""Routing drill on a real platform: two API replicas over one PostgreSQL, the sandbox
channel over HTTP, a worker, Poisson traffic from merchants granted SANDBOX_A and
SANDBOX_B, and a published rule "A first, B as fallback".

An SRE degrades ``channel.SANDBOX_A`` through the *other* replica. Within a second the
replica taking the traffic sends new payments to B; no payment fails with a 503 that
routing could have avoided; reverting brings traffic back to A; nothing is lost or
doubled and the books balance.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import free_port

from paycore.ledger.trial import trial_balance
from paycore.routing import RouteTarget, RoutingRule, RoutingStore
from runtime.bootstrap import build_platform
from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
from runtime.servers import ServerThread
from runtime.settings import Settings
from simulator import SimConfig, Simulator, ensure_demo_merchants

A, B = "SANDBOX_A", "SANDBOX_B"
FLIP_S = 1.0  #: the issue's promise: the next org within a second of the flip

pytestmark = pytest.mark.slow


@pytest.fixture
def replicas(pg_url, tmp_path):
    settings = Settings(
        database_url=pg_url,
        var_dir=str(tmp_path / "var"),
        notify_secret_value="routing-drill-secret",
    )
    stack = EmbeddedPlatform(settings, EmbeddedOptions(proxies=False)).start()
    other = build_platform(stack.settings, role="api").start()  # the second replica
    api2 = ServerThread(other.api_app(), "127.0.0.1", free_port(), "api-2").start()
    yield settings, stack, other
    api2.stop()
    other.close()
    stack.stop()


def _channel_pays_since(engine: sa.Engine, merchants: list[str], since: datetime) -> list[tuple]:
    """(created_at, pay_org_no) of pay orders with a channel part created after ``since``."""
    q = sa.text(
        "SELECT po.created_at, po.pay_org_no FROM pay_orders po "
        "WHERE po.merchant_id = ANY(:m) AND po.created_at > :t AND po.pay_type <> 'refund' "
        "AND EXISTS (SELECT 1 FROM pay_items i WHERE i.pay_order_id = po.id "
        "AND i.tool = 'channel') ORDER BY po.created_at"
    )
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(q, {"m": merchants, "t": since})]


def test_degrading_channel_a_moves_routed_pays_to_b_within_a_second(replicas):
    settings, stack, other = replicas
    port = free_port()
    merchants = [
        m
        for m in ensure_demo_merchants(
            stack.platform.paycore, settings.var_dir, f"http://127.0.0.1:{port}", settings.pay_orgs
        )
        if {A, B} <= set(m.pay_orgs)
    ]
    assert merchants, "no demo merchant is granted both A and B"
    ids = [m.merchant_id for m in merchants]
    store = RoutingStore(other.paycore.db)
    rule = RoutingRule(name="a-first", priority=10, targets=(RouteTarget(A, 100),), fallback=(B,))
    store.publish([rule], author="sre-alice", reason="routing drill: A first, B behind it")
    time.sleep(1.5)  # the routers' cache (1 s)
    sim = Simulator(
        SimConfig(
            api_url=stack.settings.api_url,
            rate=8.0,
            seed=21,
            receiver_port=port,
            receiver_failure_ratio=0.0,
            notify_secret=settings.notify_secret(),
        ),
        merchants,
    ).start()
    switches = other.stability.switches  # the SRE acts through the other replica
    engine = stack.platform.paycore.db.engine
    try:
        time.sleep(6)
        sw = switches.propose(
            "degrade",
            f"channel.{A}",
            actor="sre-alice",
            reason="routing drill",
            ttl=timedelta(minutes=10),
        )
        if sw.status == "pending":
            sw = switches.approve(sw.id, approver="sre-bob")
        flipped = datetime.now(UTC)
        time.sleep(8)
        switches.revert(sw.id, actor="sre-alice", reason="routing drill over")
        reverted = datetime.now(UTC)
        time.sleep(6)
    finally:
        sim.stop_traffic()
    left = sim.settle(90)
    audit = sim.audit()
    sim.stop()
    pays = _channel_pays_since(engine, ids, flipped - timedelta(seconds=6))
    before = [org for at, org in pays if at < flipped]
    during = [(at, org) for at, org in pays if flipped <= at < reverted]
    after = [org for at, org in pays if at >= reverted + timedelta(seconds=FLIP_S)]
    assert before and set(before) == {A}, before
    late_a = [at for at, org in during if org == A]
    first_b = next((at for at, org in during if org == B), None)
    print(
        f"routing drill: {len(before)} pays before, {len(during)} during, {len(after)} after; "
        f"last A {max(late_a, default=flipped) - flipped} and first B "
        f"{(first_b or flipped) - flipped} after the flip"
    )
    assert all(at < flipped + timedelta(seconds=FLIP_S) for at in late_a), (flipped, late_a)
    assert [org for at, org in during if at >= flipped + timedelta(seconds=FLIP_S)], during
    assert {org for at, org in during if at >= flipped + timedelta(seconds=FLIP_S)} == {B}
    assert after and set(after) == {A}, after
    # no merchant saw a 503 routing could have avoided, nor had to route around one itself
    # (a refund goes back through the org that took the money: no alternative to route to)
    refused = {k: v for k, v in sim.stats.refusals.items() if k.startswith("pay:dependency")}
    assert refused == {} and sim.stats.rerouted == 0, (refused, sim.stats.rerouted)
    assert left == 0
    assert (audit.lost, audit.doubled, audit.errors) == (0, 0, 0), audit.examples
    assert audit.paid > 40
    tb = trial_balance(stack.platform.paycore.db)
    assert tb.ok, tb
