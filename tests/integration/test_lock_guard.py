"""The trade lock through the guard: a dead Redis opens the ``redis`` breaker, pays then
fail fast naming Redis, nothing is written, and pays resume when Redis is back."""

from __future__ import annotations

import time

import pytest
from conftest import Shop, free_port

from paycore import PayCore, PayRequest, PayTool
from paycore.errors import LockBackendError
from paycore.locks import MemoryLock, RedisLock
from stability.breaker import BreakerConfig
from stability.depmap_seed import default_map
from stability.errors import BreakerOpen
from stability.guard import Guard

ORGS = ("SANDBOX_A", "SANDBOX_B")


@pytest.fixture
def guarded(migrated_db, redis_url):
    guard = Guard(
        default_map(ORGS, redis_lock=True),
        breaker_config=BreakerConfig(window_size=4, min_calls=4, open_s=0.3, half_open_probes=1),
    )
    core = PayCore(migrated_db, lock=RedisLock(redis_url), guard=guard, lock_wait=0.2)
    yield core, guard
    core.lock.close()


def _pay_orders(core) -> int:
    import sqlalchemy as sa

    with core.db.session() as s:
        return s.execute(sa.text("select count(*) from pay_orders")).scalar_one()


def test_dead_redis_opens_the_breaker_and_pays_fail_fast(guarded, redis_url):
    core, guard = guarded
    shop = Shop(core)
    shop.fund("u1", 10_000)  # a channel recharge under a live lock
    assert guard.stats.counts[("redis", "pass")] == 1
    orders, live = _pay_orders(core), core.lock

    core.lock = RedisLock(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.2)
    trades = [shop.trade(amount=100) for _ in range(6)]
    failures = []
    for t in trades:
        with pytest.raises((LockBackendError, BreakerOpen)) as info:
            core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 100),)))
        failures.append(type(info.value))
    # the window holds the recharge's pass and 3 errors (4 calls, 75% failed): it opens,
    # and from then on the breaker answers without calling Redis
    assert failures[:3] == [LockBackendError] * 3 and set(failures[3:]) == {BreakerOpen}
    counts = guard.stats.counts
    assert counts[("redis", "error")] == 3 and counts[("redis", "breaker_open")] == 3
    assert guard.breaker("redis").state == "open"
    assert _pay_orders(core) == orders and shop.balance("u1") == 10_000  # nothing written

    core.lock.close()
    core.lock = live
    time.sleep(0.35)  # the breaker's open time: one half-open probe goes through
    po = core.payments.pay(shop.mid, PayRequest(trades[0].out_trade_no, (PayTool("balance", 100),)))
    assert po.status == "success" and shop.balance("u1") == 9_900
    assert guard.breaker("redis").state == "closed"


def test_busy_lock_is_not_a_redis_failure(guarded):
    core, guard = guarded
    shop = Shop(core)
    shop.fund("u1", 1_000)
    t = shop.trade(amount=100)
    from paycore.errors import LockTimeout

    # another request holds the trade
    with core.trade_lock(t.id, link="link.pay"), pytest.raises(LockTimeout):
        core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 100),)))
    assert guard.stats.counts[("redis", "error")] == 0
    assert guard.breaker("redis").state == "closed"


def test_in_process_lock_is_not_guarded(migrated_db):
    guard = Guard(default_map(ORGS, redis_lock=True))
    core = PayCore(migrated_db, lock=MemoryLock(), guard=guard)
    shop = Shop(core)
    shop.fund("u1", 1_000)
    assert not [k for k in guard.stats.counts if k[0] == "redis"]
