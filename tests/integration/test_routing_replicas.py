"""Two API replicas built as ``paywatch serve`` builds them (PostgreSQL, Redis): a switch
flipped on one moves the other's routed pays off the degraded org within a second, a
revert brings them back, and a rule set published moves them within a second too."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from paycore import CreateTrade, PayRequest, PayTool
from paycore.routing import RouteTarget, RoutingRule, RoutingStore

A, B = "SANDBOX_A", "SANDBOX_B"
ORGS = (A, B)


def rules(first: str, then: str) -> tuple[RoutingRule, ...]:
    return (
        RoutingRule(name="r1", priority=1, targets=(RouteTarget(first, 100),), fallback=(then,)),
    )


@pytest.fixture
def replicas(pg_url, redis_url):
    from runtime.bootstrap import build_platform
    from runtime.settings import Settings

    settings = Settings(
        database_url=pg_url,
        redis_url=redis_url,
        pay_orgs=ORGS,
        channel_secrets={A: "a", B: "b"},
    )
    built = [build_platform(settings, channels=False).start() for _ in range(2)]
    yield built
    for p in built:
        p.close()


class Payer:
    def __init__(self, platform, mid: str) -> None:
        self.core, self.mid, self.n = platform.paycore, mid, 0

    def pay(self) -> str:
        self.n += 1
        no = f"rp{id(self)}x{self.n}"
        self.core.trades.create(
            self.mid, CreateTrade(no, "instant", 100, "CNY", "u1", "goods", "physical", A)
        )
        return self.core.payments.pay(
            self.mid, PayRequest(no, (PayTool("channel", 100),))
        ).pay_org_no

    def until(self, org: str, since: float, limit: float = 1.0) -> float:
        """Pay until a pay takes ``org``; the seconds it took from ``since``."""
        while (got := self.pay()) != org:
            assert time.time() - since < limit, f"still {got} after {limit} s"
            time.sleep(0.01)
        return time.time() - since


def test_a_flip_on_one_replica_moves_the_others_pays_within_a_second(replicas) -> None:
    one, two = replicas
    mid = one.paycore.merchants.onboard(
        "routed shop", products=[("goods", "physical")], pay_orgs=list(ORGS)
    ).merchant.merchant_id
    RoutingStore(one.db).publish(rules(A, B), author="sre", reason="A first")
    payer = Payer(two, mid)
    payer.until(A, time.time(), limit=2.0)  # the replica took the rules up

    switches = one.stability.switches
    sw = switches.propose(
        "degrade", f"channel.{A}", actor="alice", reason="A incident", ttl=timedelta(minutes=5)
    )
    switches.approve(sw.id, approver="bob")  # a strong dependency: four eyes
    lag = payer.until(B, time.time())
    assert lag < 1.0
    decided = two.observability.registry.get_sample_value(
        "paywatch_routing_fallbacks_total",
        {"rule": "r1", "from_org": A, "to_org": B, "reason": "degraded"},
    )
    assert decided and decided >= 1

    switches.revert(sw.id, actor="alice", reason="A recovered")
    assert payer.until(A, time.time()) < 1.0

    # a rule set published on one replica reaches the other within a second
    RoutingStore(one.db).publish(rules(B, A), author="sre", reason="B first", expected_version=1)
    assert payer.until(B, time.time()) < 1.0


def test_a_breaker_opened_on_one_replica_moves_the_others_pays(replicas) -> None:
    one, two = replicas
    mid = one.paycore.merchants.onboard(
        "breaker shop", products=[("goods", "physical")], pay_orgs=list(ORGS)
    ).merchant.merchant_id
    RoutingStore(one.db).publish(rules(A, B), author="sre", reason="A first")
    payer = Payer(two, mid)
    payer.until(A, time.time(), limit=2.0)

    guard = one.stability.guard
    opened = time.time()
    while guard.breaker(f"channel.{A}").state != "open":  # A's sends fail on replica one
        guard.record(f"channel.{A}", "link.pay", False, 0.01)
    assert payer.until(B, opened) < 1.0  # shared through the breaker store
    assert two.stability.guard.availability(f"channel.{A}") == "breaker_open"
