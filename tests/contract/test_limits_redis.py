"""Contract tests of the Redis limit store only: shared buckets, each rule's policy when
Redis is down or silent, one round trip per decision, expiry; and the memory store's sweep."""

from __future__ import annotations

import socket
import time
import uuid

import pytest
from limit_stores import (
    A,
    drain,
    redis_store,  # noqa: F401 - fixture
)

from stability.errors import LimitBackendUnavailable, RateLimited
from stability.limits import Limiter, LimitRule, LimitStore, MemoryLimitStore
from stability.limits_redis import TOKEN_BUCKET_LUA, RedisLimitStore


def test_redis_buckets_are_shared_between_clients(redis_url: str) -> None:
    one, two = RedisLimitStore(redis_url), RedisLimitStore(redis_url)
    try:
        assert drain(one, "k", 1, 3, 2) == [True, True]
        assert drain(two, "k", 1, 3, 2) == [True, False]  # a second process, same bucket
    finally:
        one.close()
        two.close()


def policies_limiter(store: LimitStore) -> Limiter:
    return Limiter(
        store,
        [
            LimitRule("open", "risk", 1, 1, policy="fail_open"),
            LimitRule("closed", "ledger", 1, 1, policy="fail_closed"),
            LimitRule("trial", "ledger", 1, 1, policy="fail_closed", dry_run=True),
        ],
    )


def assert_policies(limiter: Limiter) -> None:
    opened = limiter.check("risk", A)
    assert opened.allowed and opened.backend_error and opened.blocked_by is None
    closed = limiter.check("ledger", A)
    assert not closed.allowed and closed.backend_error and closed.blocked_by == "closed"
    assert closed.dry_run_blocked == ["trial"]
    with pytest.raises(RateLimited):
        limiter.enforce("ledger", A)


def test_redis_down_applies_each_rules_policy() -> None:
    dead = RedisLimitStore("redis://:secret@127.0.0.1:1/0")
    try:
        with pytest.raises(LimitBackendUnavailable) as info:
            dead.acquire("k", 1, 1)
        assert "secret" not in str(info.value) and "127.0.0.1" not in str(info.value)
        assert_policies(policies_limiter(dead))
    finally:
        dead.close()


def test_redis_that_never_answers_times_out_fast() -> None:
    with socket.socket() as silent:  # accepts connections (backlog) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        hung = RedisLimitStore(f"redis://127.0.0.1:{port}/0")
        try:
            began = time.monotonic()
            assert_policies(policies_limiter(hung))
            assert time.monotonic() - began < 4.0  # 0.25 s timeouts, not the 5 s default
        finally:
            hung.close()


def test_one_evalsha_round_trip_per_decision(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    monitor_client = redis.Redis.from_url(redis_url, socket_timeout=5)
    store = RedisLimitStore(client)
    marker = f"end-{uuid.uuid4().hex}"
    try:
        store.acquire("warm", 10, 10)  # the first call may load the script
        address = client.client_info()["addr"]
        with monitor_client.monitor() as monitor:
            for i in range(5):
                store.acquire(f"k{i % 2}", 10, 10)
            client.echo(marker)
            seen: list[str] = []
            while True:
                cmd = monitor.next_command()
                if marker in cmd["command"]:
                    break
                if f"{cmd['client_address']}:{cmd['client_port']}" == address:
                    seen.append(cmd["command"].split(" ", 1)[0].upper())
        assert seen == ["EVALSHA"] * 5
    finally:
        store.close()
        client.close()
        monitor_client.close()


def test_lua_source_is_exported() -> None:
    assert "redis.call('TIME')" in TOKEN_BUCKET_LUA and "PEXPIRE" in TOKEN_BUCKET_LUA


def test_redis_bucket_expires(redis_store: RedisLimitStore, redis_url: str) -> None:
    import redis

    redis_store.acquire("k", 10, 5)
    client = redis.Redis.from_url(redis_url)
    try:
        ttl = client.pttl(redis_store.namespace + "k")
        assert 900 <= ttl <= 1000  # 2 x full refill (0.5 s) but at least 1 s
    finally:
        client.close()


def test_memory_store_sweeps_buckets_that_refilled() -> None:
    class SmallSweep(MemoryLimitStore):
        SWEEP_EVERY = 4

    now = [100.0]
    store = SmallSweep(clock=lambda: now[0])
    for key in ("a", "b", "c"):
        assert store.take(key, 1.0, 2.0) == (True, 1.0, 0.0)
    now[0] += 10.0  # a, b and c are full again: the same as absent
    assert store.acquire("d", 1.0, 2.0).allowed  # the 4th decision sweeps
    assert set(store._buckets) == {"d"}
    assert store.take("d", 1.0, 2.0) == (True, 0.0, 1.0)
    assert store.take("d", 1.0, 2.0) == (False, 0.0, 1.0)
