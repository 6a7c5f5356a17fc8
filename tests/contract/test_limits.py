"""Contract tests for :mod:`stability.limits`: every limit store obeys the same rules."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from limit_stores import (
    drain,
    store,  # noqa: F401 - fixture
)

from stability.errors import LimitBackendUnavailable
from stability.limits import LimitStore
from stability.limits_redis import RedisLimitStore


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


@pytest.mark.slow  # counts over two seconds of wall time
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
