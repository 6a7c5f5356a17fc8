"""Redis's numbers come from the map's redis edge, against real Redis: the shared
client's socket timeout and retries, and how long a pay waits for a busy trade lock."""

from __future__ import annotations

import time

import pytest

from paycore import PayCore
from paycore.errors import LockTimeout
from paycore.locks import RedisLock
from runtime.wiring import build_stability
from stability.depmap_seed import default_map
from stability.guard import Guard

ORGS = ("SANDBOX_A",)


def test_a_busy_trade_lock_is_waited_for_as_long_as_the_redis_edge_allows(migrated_db, redis_url):
    dmap = default_map(ORGS, redis_lock=True)
    edge = dmap.edge("link.pay", "redis")
    budget = edge.timeout_ms * (1 + edge.retries) / 1000
    core = PayCore(migrated_db, lock=RedisLock(redis_url), guard=Guard(dmap), lock_wait=10.0)
    try:
        assert core.lock.acquire("trade:42", ttl=30, wait=0)  # another pay holds it
        start = time.monotonic()
        with pytest.raises(LockTimeout), core.trade_lock(42, link="link.pay"):
            pass
        took = time.monotonic() - start
        assert budget <= took < budget + 1.0, took  # not the core's 10 s
    finally:
        core.lock.close()


def test_the_shared_redis_client_takes_the_redis_edge_numbers(migrated_db, redis_url):
    runtime = build_stability(migrated_db.engine, pay_orgs=ORGS, redis_url=redis_url)
    try:
        edge = runtime.dmap.edge("link.pay", "redis")
        kwargs = runtime.redis.connection_pool.connection_kwargs
        assert kwargs["socket_timeout"] == edge.timeout_ms / 1000
        assert kwargs["socket_connect_timeout"] == edge.timeout_ms / 1000
        assert runtime.redis.get_retry()._retries == edge.retries
    finally:
        runtime.close()
