"""Contract tests for :mod:`stability.limits`: every limit store obeys the same rules."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from stability.errors import LimitBackendUnavailable, RateLimited
from stability.limits import (
    Limiter,
    LimitRule,
    LimitStore,
    MemoryLimitStore,
    make_limit_store,
)
from stability.limits_redis import TOKEN_BUCKET_LUA, RedisLimitStore

A = {"merchant_id": "m-a", "order_type": "goods", "pay_org_no": "ORG1"}
B = {"merchant_id": "m-b", "order_type": "goods", "pay_org_no": "ORG1"}


@pytest.fixture(params=["memory", "redis", "redis-direct"])
def store(request: pytest.FixtureRequest) -> Iterator[LimitStore]:
    """The same contract runs against the in-process and the Redis backend (combining
    concurrent decisions into pipelines, the default, and one round trip each)."""
    if request.param == "memory":
        backend: LimitStore = MemoryLimitStore()
    else:
        backend = RedisLimitStore(
            request.getfixturevalue("redis_url"), combine=request.param == "redis"
        )
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[RedisLimitStore]:
    backend = RedisLimitStore(redis_url, namespace=f"t:{uuid.uuid4().hex[:8]}:")
    try:
        yield backend
    finally:
        backend.close()


def drain(store: LimitStore, key: str, rate: float, burst: float, n: int) -> list[bool]:
    return [store.acquire(key, rate, burst).allowed for _ in range(n)]


# -- the store contract ------------------------------------------------------------


def test_new_bucket_is_full_then_refuses(store: LimitStore) -> None:
    decisions = [store.acquire("k", 1, 5) for _ in range(6)]
    assert [d.allowed for d in decisions] == [True] * 5 + [False]
    assert decisions[0].remaining == pytest.approx(4, abs=0.05)
    assert decisions[4].remaining == pytest.approx(0, abs=0.05)
    assert decisions[0].retry_after == 0  # tokens left: the next call may go at once


def test_refills_over_time_up_to_burst(store: LimitStore) -> None:
    assert drain(store, "k", 50, 5, 6) == [True] * 5 + [False]
    time.sleep(0.1)  # 50/s x 0.1 s = 5 tokens
    assert sum(drain(store, "k", 50, 5, 3)) >= 3
    time.sleep(0.5)  # 25 tokens' worth, but the bucket holds 5
    assert sum(drain(store, "k", 50, 5, 10)) in (5, 6)


def test_retry_after_is_time_to_next_token(store: LimitStore) -> None:
    drain(store, "k", 10, 2, 2)
    refused = store.acquire("k", 10, 2)
    assert not refused.allowed
    assert 0.05 < refused.retry_after <= 0.1 + 1e-6
    time.sleep(refused.retry_after + 0.02)
    assert store.acquire("k", 10, 2).allowed


def test_cost_and_retry_after_for_a_larger_cost(store: LimitStore) -> None:
    assert store.acquire("k", 10, 5, cost=5).allowed
    refused = store.acquire("k", 10, 5, cost=5)
    assert not refused.allowed
    assert 0.4 < refused.retry_after <= 0.5 + 1e-6  # five tokens at 10/s
    with pytest.raises(ValueError):
        store.acquire("k", 10, 5, cost=6)  # could never fit
    with pytest.raises(ValueError):
        store.acquire("k", 0, 5)


def test_keys_are_independent_and_reset_refills(store: LimitStore) -> None:
    assert drain(store, "a", 1, 2, 3) == [True, True, False]
    assert drain(store, "b", 1, 2, 1) == [True]
    store.reset("a")
    assert drain(store, "a", 1, 2, 3) == [True, True, False]


def test_n_per_second_from_several_threads(store: LimitStore) -> None:
    rate, burst, threads, seconds, tolerance = 50, 5, 8, 2.0, 8
    admitted = [0] * threads
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def hammer(i: int) -> None:
        start.wait()
        while time.monotonic() < deadline:  # only calls issued inside the window count
            if store.acquire("hot", rate, burst).allowed:
                admitted[i] += 1
            time.sleep(0.0005)

    workers = [threading.Thread(target=hammer, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    deadline = time.monotonic() + seconds
    start.wait()
    for w in workers:
        w.join()
    expected = rate * seconds + burst
    assert expected - tolerance <= sum(admitted) <= expected + tolerance, sum(admitted)


def test_every_concurrent_decision_is_applied_exactly_once(store: LimitStore) -> None:
    threads, calls, burst = 16, 25, 100
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def ask() -> None:
        start.wait()
        mine = [store.acquire("once", 0.001, burst).allowed for _ in range(calls)]
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(results) == threads * calls and sum(results) == burst


def test_combined_decisions_survive_a_flushed_script_cache(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    store = RedisLimitStore(client, namespace=f"t:{uuid.uuid4().hex[:8]}:")
    try:
        store.acquire("warm", 1, 1)
        client.script_flush()  # as after a Redis restart: NOSCRIPT for the next EVALSHAs
        results: list[bool] = []
        start = threading.Barrier(12)

        def ask() -> None:
            start.wait()
            results.append(store.acquire("shared", 0.001, 6).allowed)

        workers = [threading.Thread(target=ask) for _ in range(12)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(10)
        assert len(results) == 12 and sum(results) == 6  # every decision ran exactly once
    finally:
        store.close()
        client.close()


def test_a_dead_redis_answers_every_waiting_thread() -> None:
    dead = RedisLimitStore("redis://127.0.0.1:1/0")
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def ask() -> None:
        start.wait()
        for _ in range(5):
            try:
                dead.acquire("k", 1, 1)
            except LimitBackendUnavailable as exc:
                errors.append(exc)

    workers = [threading.Thread(target=ask) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    dead.close()
    assert not any(w.is_alive() for w in workers) and len(errors) == 40


# -- the limiter over each store -----------------------------------------------------


def test_scoped_rule_limits_each_merchant_separately(store: LimitStore) -> None:
    limiter = Limiter(store, [LimitRule("per-merchant", "pay", 1, 2, scope=("merchant_id",))])
    assert [limiter.check("pay", A).allowed for _ in range(3)] == [True, True, False]
    blocked = limiter.check("pay", A)
    assert blocked.blocked_by == "per-merchant" and blocked.retry_after > 0
    assert not blocked.backend_error
    assert limiter.check("pay", B).allowed  # merchant A's limit is not B's
    assert limiter.check("refund", A).allowed  # no rule for that resource


def test_combination_scope(store: LimitStore) -> None:
    rule = LimitRule("m-org", "pay", 1, 1, scope=("merchant_id", "pay_org_no"))
    limiter = Limiter(store, [rule])
    assert limiter.check("pay", A).allowed
    assert not limiter.check("pay", A).allowed
    assert limiter.check("pay", {**A, "pay_org_no": "ORG2"}).allowed
    assert limiter.check("pay", B).allowed


def test_every_rule_of_the_resource_applies(store: LimitStore) -> None:
    limiter = Limiter(
        store,
        [
            LimitRule("global", "pay", 1, 3),
            LimitRule("per-merchant", "pay", 1, 1, scope=("merchant_id",)),
        ],
    )
    assert limiter.check("pay", A).allowed
    assert limiter.check("pay", A).blocked_by == "per-merchant"
    assert limiter.check("pay", B).allowed
    # global: A took 2 (its refused call too: global is checked first), B took 1
    assert limiter.check("pay", {**B, "merchant_id": "m-c"}).blocked_by == "global"


def test_dry_run_counts_but_never_blocks(store: LimitStore) -> None:
    limiter = Limiter(store, [LimitRule("trial", "pay", 1, 2, dry_run=True)])
    outcomes = [limiter.check("pay", A) for _ in range(5)]
    assert all(o.allowed and o.blocked_by is None for o in outcomes)
    assert [o.dry_run_blocked for o in outcomes] == [[], [], ["trial"], ["trial"], ["trial"]]
    limiter.enforce("pay", A)  # does not raise


def test_set_rules_changes_limits_live(store: LimitStore) -> None:
    limiter = Limiter(store, [LimitRule("r", "pay", 1, 2)])
    assert [limiter.check("pay", A).allowed for _ in range(3)] == [True, True, False]
    limiter.set_rules([LimitRule("r", "pay", 200, 20)])  # raised: the bucket refills fast
    time.sleep(0.05)
    assert sum(limiter.check("pay", A).allowed for _ in range(5)) == 5
    limiter.set_rules([LimitRule("r", "pay", 0.1, 1, scope=("merchant_id",))])
    assert [limiter.check("pay", B).allowed for _ in range(2)] == [True, False]
    limiter.set_rules([])
    assert limiter.check("pay", B).allowed and limiter.rules() == []


def test_enforce_raises_rate_limited(store: LimitStore) -> None:
    limiter = Limiter(store, [LimitRule("r", "pay", 2, 1)])
    assert limiter.enforce("pay", A).allowed
    with pytest.raises(RateLimited) as info:
        limiter.enforce("pay", A)
    assert info.value.resource == "pay"
    assert 0 < info.value.retry_after <= 0.5 + 1e-6
    assert info.value.http_status == 429


def test_rule_validation() -> None:
    LimitRule("ok", "pay", 0.5, 1, scope=("merchant_id", "order_type", "sub_type", "pay_org_no"))
    for bad in (
        dict(rate=0),
        dict(burst=0.5),
        dict(policy="maybe"),
        dict(scope=("user_id",)),
    ):
        kwargs = {"name": "r", "resource": "pay", "rate": 1.0, "burst": 1.0, **bad}
        with pytest.raises(ValueError):
            LimitRule(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Limiter(MemoryLimitStore(), [LimitRule("x", "a", 1, 1), LimitRule("x", "b", 1, 1)])


def test_make_limit_store(redis_url: str) -> None:
    assert isinstance(make_limit_store(None), MemoryLimitStore)
    assert isinstance(make_limit_store("memory://"), MemoryLimitStore)
    redis_backend = make_limit_store(redis_url)
    assert isinstance(redis_backend, RedisLimitStore)
    redis_backend.close()
    with pytest.raises(ValueError):
        make_limit_store("mysql://x")


# -- Redis only ----------------------------------------------------------------------


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
