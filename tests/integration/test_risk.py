"""The risk engine on the pay link, on SQLite and PostgreSQL: limits per merchant and user that
count only attempts that began, Redis shared between replicas and Redis down (with the
review log of unchecked payments)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from conftest import Shop, table_counts
from risk_shop import MIDNIGHT, EpochClock, closed_port_url, engine, new_paid, pay, usage

from paycore import PayCore
from paycore.errors import InsufficientBalance, LockBackendError, RiskRejected, WrongState
from paycore.locks import MemoryLock, RedisLock
from paycore.risk import BLOCKED, RedisRiskCounters, RiskEngine, RiskPolicy, list_reviews


# -- limits and what counts ---------------------------------------------------------------
def test_daily_limits_hold_per_merchant_and_reset_at_utc_midnight(shop, core):
    risk = engine(core, daily_max_count=2, daily_max_amount=10_000)
    risk.clock = clock = EpochClock(MIDNIGHT - 120)
    other = Shop(core)
    new_paid(shop)
    new_paid(shop)
    before = table_counts(core.db)
    with pytest.raises(RiskRejected, match="daily limit on payments"):
        new_paid(shop)
    after = table_counts(core.db)
    assert after["pay_orders"] == before["pay_orders"] and after["risk_reviews"] == 0
    new_paid(other)  # another merchant's u1 has its own counters
    clock.now = MIDNIGHT + 1  # a new UTC day
    new_paid(shop)
    assert usage(risk, shop.mid, "u1") == (1, 1000)


def test_refused_attempts_are_not_counted(shop, core):
    risk = engine(core, max_per_user_per_minute=2)
    first = shop.trade("instant", 1000, "u1")
    pay(shop, first.out_trade_no, ("channel", 1000))
    for i in range(5):  # the trade is already being paid: refused before the risk check
        with pytest.raises(WrongState):
            pay(shop, first.out_trade_no, ("channel", 1000), pay_no=f"again{i}")
    for _ in range(5):  # begun, then refused inside the transaction: the reservation goes back
        poor = shop.trade("instant", 1000, "u1")
        with pytest.raises(InsufficientBalance):
            pay(shop, poor.out_trade_no, ("balance", 1000))
    assert usage(risk, shop.mid, "u1", "minute") == (1, 1000)
    new_paid(shop)
    with pytest.raises(RiskRejected, match="last minute"):
        new_paid(shop)


def test_attempts_failing_on_an_unreachable_lock_are_not_counted(migrated_db):
    core = PayCore(migrated_db, lock=RedisLock(closed_port_url(), socket_timeout=0.2))
    try:
        shop = Shop(core)
        risk = engine(core, max_per_user_per_minute=2)
        for _ in range(4):
            with pytest.raises(LockBackendError):
                new_paid(shop)
        assert usage(risk, shop.mid, "u1", "minute") == (0, 0)
        core.lock.close()
        core.lock = MemoryLock()  # the lock backend is back
        new_paid(shop)
        new_paid(shop)
        with pytest.raises(RiskRejected):
            new_paid(shop)
    finally:
        core.close()


def test_attempts_refused_by_a_closed_channel_are_not_counted(migrated_db):
    from runtime.wiring import build_stability
    from stability.errors import StabilityError

    runtime = build_stability(migrated_db.engine, pay_orgs=(Shop.ORG,), redis_url=None)
    core = PayCore(
        migrated_db,
        guard=runtime.guard,
        risk=RiskEngine(RiskPolicy(max_per_user_per_minute=1), db=migrated_db),
    )
    try:
        shop = Shop(core)
        channel = runtime.guard.breaker(f"channel.{Shop.ORG}")
        channel.force("forced_open", "channel outage drill")
        for _ in range(3):
            with pytest.raises(StabilityError):
                new_paid(shop)
        channel.force(None, "drill over")
        new_paid(shop)  # the refused attempts gave their reservations back
        with pytest.raises(RiskRejected):
            new_paid(shop)
    finally:
        core.close()
        runtime.close()


def test_concurrent_pays_never_pass_the_daily_count(shop, core):
    engine(core, daily_max_count=5)
    trades = [shop.trade("instant", 100, "u7") for _ in range(16)]
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(no: str) -> None:
        try:
            pay(shop, no, ("channel", 100))
            result = "paid"
        except RiskRejected:
            result = "rejected"
        except Exception as exc:  # noqa: BLE001 - named in the assertion below
            result = type(exc).__name__
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=attempt, args=(t.out_trade_no,)) for t in trades]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["paid"] * 5 + ["rejected"] * 11
    assert usage(core.risk, shop.mid, "u7") == (5, 500)


# -- Redis: shared by replicas, and down ---------------------------------------------------
def test_replicas_share_the_limits_through_redis(migrated_db, redis_server):
    ns = f"t:{uuid.uuid4().hex}:"
    policy = RiskPolicy(daily_max_count=3)
    cores = [
        PayCore(
            migrated_db,
            risk=RiskEngine(
                policy, db=migrated_db, counters=RedisRiskCounters(redis_server, namespace=ns)
            ),
        )
        for _ in range(2)
    ]
    try:
        shop = Shop(cores[0])
        replicas = [shop, Shop.__new__(Shop)]
        replicas[1].__dict__.update(shop.__dict__, core=cores[1])
        new_paid(replicas[0])
        new_paid(replicas[1])
        new_paid(replicas[0])
        for replica in replicas:
            with pytest.raises(RiskRejected):
                new_paid(replica)
    finally:
        for c in cores:
            c.risk.close()
            c.lock.close()


def _guarded_core(db, counters_url: str, **limits: Any):
    from runtime.wiring import build_stability

    runtime = build_stability(db.engine, pay_orgs=(Shop.ORG, "SANDBOX_B"), redis_url=None)
    risk = RiskEngine(
        RiskPolicy(**limits), db=db, counters=RedisRiskCounters(counters_url, namespace="t:down:")
    )
    return runtime, PayCore(db, guard=runtime.guard, risk=risk)


def test_redis_down_allows_small_payments_unchecked_and_records_each(migrated_db):
    runtime, core = _guarded_core(
        migrated_db, closed_port_url(), fallback_max_amount=5_000, max_per_user_per_minute=1
    )
    try:
        shop = Shop(core)
        core.risk.block(shop.mid, "u-bad", reason="fraud", actor="ops")
        paid = [new_paid(shop, "u1", 1_000) for _ in range(12)]  # above the minute limit, too
        with pytest.raises(RiskRejected, match="fallback threshold"):
            new_paid(shop, "u1", 5_001)
        with pytest.raises(RiskRejected) as refused:
            new_paid(shop, "u-bad", 100)  # the blocklist holds while counters are down
        assert refused.value.message == BLOCKED
        reviews = list_reviews(core.db)
        assert sorted(r.trade_id for r in reviews) == sorted(p.trade_id for p in paid)
        assert {(r.merchant_id, r.user_id, r.amount, r.status) for r in reviews} == {
            (shop.mid, "u1", 1_000, "open")
        }
        reasons = {r.reason for r in reviews}
        assert "risk counters unreachable: ConnectionError" in reasons
        assert runtime.guard.breaker("risk").state == "open"  # the guard stopped asking
        assert any("breaker" in r for r in reasons)
    finally:
        core.risk.close()
        runtime.close()


def test_redis_down_without_a_guard_still_falls_back(shop, core):
    core.risk.counters = RedisRiskCounters(closed_port_url(), namespace="t:down:")
    new_paid(shop, "u1", 2_000)
    [review] = list_reviews(core.db)
    assert (review.user_id, review.amount) == ("u1", 2_000)
    with pytest.raises(RiskRejected):
        new_paid(shop, "u1", core.risk.policy.fallback_max_amount + 1)
