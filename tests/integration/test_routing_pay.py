"""Pays routed by the rules and the stability layer, on SQLite and PostgreSQL: a merchant
granted SANDBOX_A and SANDBOX_B, rule ``r1`` = A:100 with fallback B. A degraded switch,
an open breaker, an exhausted limit or a full bulkhead on A move pays to B (counted as
fallbacks); a pay naming A keeps A (503 while A refuses); reverting brings pays back to A.
Money: the routed item settles at B and the ledger balances."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa
from conftest import Shop
from prometheus_client import CollectorRegistry, generate_latest

from collectors.routing_metrics import RoutingMetrics
from paycore import PayCore, PayRequest, PayTool
from paycore.ledger import trial_balance
from paycore.routing import Router, RouteTarget, RoutingRule, RoutingStore
from stability.depmap_seed import default_map
from stability.errors import BreakerOpen, DependencyFailed, RateLimited
from stability.guard import Guard
from stability.limits import LimitRule
from stability.switches import SwitchSnapshot

A, B = "SANDBOX_A", "SANDBOX_B"
R1 = (RoutingRule(name="r1", priority=1, targets=(RouteTarget(A, 100),), fallback=(B,)),)


class World:
    def __init__(self, db, **guard_kw) -> None:
        self.guard = Guard(default_map((A, B), redis_lock=False), **guard_kw)
        self.registry = CollectorRegistry()
        self.metrics = RoutingMetrics(self.registry)
        self.store = RoutingStore(db)
        self.store.publish(R1, author="sre", reason="A first, B when A cannot")
        self.router = Router(self.store, rng=random.Random(7), recorder=self.metrics)
        self.core = PayCore(db, guard=self.guard, router=self.router)
        self.shop = Shop(self.core)  # granted A and B; trades name A
        self.version = 0

    def pay(self, org: str | None = None, amount: int = 500):
        t = self.shop.trade(amount=amount)
        req = PayRequest(t.out_trade_no, (PayTool("channel", amount),), pay_org_no=org)
        return t, self.core.payments.pay(self.shop.mid, req)

    def switch(self, **kw) -> None:
        self.version += 1
        self.guard.apply(SwitchSnapshot(version=self.version, **kw))

    def pay_orders(self) -> int:
        with self.core.db.engine.connect() as c:
            return c.execute(sa.text("select count(*) from pay_orders")).scalar_one()


@pytest.fixture
def world(migrated_db):
    w = World(migrated_db)
    yield w
    w.core.lock.close()


def test_rules_route_to_a_and_a_degraded_switch_moves_pays_to_b(world) -> None:
    _, po = world.pay()
    assert po.pay_org_no == A and po.items[0].pay_org_no == A
    assert world.metrics.decision_count("r1", A) == 1
    # the router made the series of every org of the rules it took up: B's is at 0
    text = generate_latest(world.registry).decode()
    assert f'paywatch_routing_decisions_total{{pay_org="{B}",rule="r1"}} 0.0' in text

    world.switch(degraded=frozenset({f"channel.{A}"}))
    for _ in range(3):
        t, po = world.pay()
        assert po.status == "processing"
        assert po.pay_org_no == B and po.items[0].pay_org_no == B
    assert world.metrics.decision_count("r1", B) == 3
    assert world.metrics.fallback_count("r1", A, B, "degraded") == 3
    # the routed item settles at B: money taken, the trade paid, the books balance
    assert world.shop.settle(po.items[0]) == "settled"
    assert world.core.payments.trades.get(world.shop.mid, t.out_trade_no).status == "paid"
    assert trial_balance(world.core.db).ok

    world.switch()  # reverted: A again
    _, po = world.pay()
    assert po.pay_org_no == A
    assert world.metrics.decision_count("r1", A) == 2


def test_an_open_breaker_on_a_moves_pays_to_b(world) -> None:
    world.switch(forced={f"channel.{A}": "forced_open"})
    _, po = world.pay()
    assert po.pay_org_no == B
    assert world.metrics.fallback_count("r1", A, B, "breaker_open") == 1
    world.switch()
    assert world.pay()[1].pay_org_no == A


def test_a_pay_naming_a_keeps_a_and_fails_fast_while_a_is_degraded(world) -> None:
    world.switch(degraded=frozenset({f"channel.{A}"}))
    before = world.pay_orders()
    with pytest.raises(DependencyFailed) as err:
        world.pay(org=A)
    assert err.value.resource == f"channel.{A}"
    assert world.pay_orders() == before  # nothing written
    assert world.metrics.decision_count("r1", B) == 0  # not routed: nothing counted
    _, po = world.pay(org=B)  # naming the other org works
    assert po.pay_org_no == B
    world.switch()
    assert world.pay(org=A)[1].pay_org_no == A


def test_every_candidate_refusing_raises_the_first_refusal(world) -> None:
    world.switch(degraded=frozenset({f"channel.{A}"}), forced={f"channel.{B}": "forced_open"})
    before = world.pay_orders()
    with pytest.raises(DependencyFailed) as err:
        world.pay()
    assert not isinstance(err.value, BreakerOpen)  # A's refusal, not B's
    assert (err.value.resource, err.value.reason) == (f"channel.{A}", "degraded")
    assert world.pay_orders() == before


def test_a_merchant_not_granted_b_gets_no_fallback(world) -> None:
    only_a = world.core.merchants.onboard(
        "only A", products=[("goods", "physical")], pay_orgs=[A], fee_bps=0
    ).merchant.merchant_id
    world.switch(degraded=frozenset({f"channel.{A}"}))
    t = world.core.trades.create(only_a, _create(world))
    with pytest.raises(DependencyFailed):
        world.core.payments.pay(only_a, PayRequest(t.out_trade_no, (PayTool("channel", 100),)))


def _create(world):
    from paycore import CreateTrade

    return CreateTrade(
        trade_type="instant",
        amount=100,
        currency="CNY",
        user_id="u9",
        order_type="goods",
        sub_type="physical",
        pay_org_no=A,
        out_trade_no=world.shop.no("only"),
    )


def test_a_replayed_pay_returns_its_first_org(world) -> None:
    world.switch(degraded=frozenset({f"channel.{A}"}))
    t, po = world.pay()
    assert po.pay_org_no == B
    world.switch()
    req = PayRequest(t.out_trade_no, (PayTool("channel", 500),))
    again = world.core.payments.pay(world.shop.mid, req)
    assert (again.pay_org_no, again.items[0].channel_txn_no) == (B, po.items[0].channel_txn_no)


def test_balance_only_pays_are_not_routed(world) -> None:
    world.shop.fund("u1", 1_000)
    decisions = world.metrics.decision_count("r1", A)
    world.switch(degraded=frozenset({f"channel.{A}"}))
    t = world.shop.trade(amount=100)
    po = world.core.payments.pay(
        world.shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 100),))
    )
    assert po.status == "success" and po.pay_org_no == A  # the trade's org, no channel asked
    assert world.metrics.decision_count("r1", A) == decisions


def test_without_a_router_the_trades_org_as_before(world) -> None:
    world.core.router = None
    world.switch(degraded=frozenset({f"channel.{A}"}))
    with pytest.raises(DependencyFailed):
        world.pay()


def test_an_exhausted_limit_on_a_moves_pays_to_b(migrated_db) -> None:
    rule = LimitRule(name="a_cap", resource=f"channel.{A}", rate=0.001, burst=1)
    w = World(migrated_db, base_rules=[rule])
    try:
        assert w.pay()[1].pay_org_no == A  # the one token
        assert w.pay()[1].pay_org_no == B
        assert w.metrics.fallback_count("r1", A, B, "blocked") == 1
        with pytest.raises(RateLimited):
            w.pay(org=A)
    finally:
        w.core.lock.close()


def test_a_full_bulkhead_on_a_moves_pays_to_b_and_takes_no_token(migrated_db) -> None:
    w = World(migrated_db, bulkheads={f"channel.{A}": 1})
    try:
        slot = w.guard.bulkhead(f"channel.{A}")
        assert slot is not None and slot.try_enter()  # a send in flight holds A's one slot
        assert w.pay()[1].pay_org_no == B
        assert w.metrics.fallback_count("r1", A, B, "bulkhead_full") == 1
        slot.leave()
        assert w.pay()[1].pay_org_no == A
    finally:
        w.core.lock.close()


def test_the_pays_user_segment_and_amount_choose_the_rule(world) -> None:
    vip = RoutingRule(name="vip", priority=0, user_segment="vip", targets=(RouteTarget(B, 1),))
    big = RoutingRule(
        name="big", priority=0, amount_min=10_000, amount_max=10_000, targets=(RouteTarget(B, 1),)
    )
    world.store.publish((vip, big, *R1), author="sre", reason="vip and big to B")
    world.router.refresh()
    t = world.shop.trade(amount=500)
    req = PayRequest(t.out_trade_no, (PayTool("channel", 500),), user_segment="vip")
    assert world.core.payments.pay(world.shop.mid, req).pay_org_no == B
    assert world.pay(amount=500)[1].pay_org_no == A  # no segment: r1
    assert world.pay(amount=10_000)[1].pay_org_no == B  # the bound is inclusive
    assert world.pay(amount=10_001)[1].pay_org_no == A
    assert world.metrics.decision_count("vip", B) == 1
    assert world.metrics.decision_count("big", B) == 1
