"""Contract tests for the risk counter stores: the in-process and the Redis one obey the
same rules (atomic reservation over every window, give-back, expiry, scopes apart).

The Redis store runs on the shared test Redis under a namespace unique to each test
(never a FLUSHDB: other suites use the same database at the same time).
"""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from paycore.errors import RiskUnavailable
from paycore.risk import (
    MemoryRiskCounters,
    RedisRiskCounters,
    RiskCounters,
    RiskPolicy,
    Window,
    make_risk_counters,
    windows_at,
)

A = "m-a|CNY|u1"
B = "m-b|CNY|u1"


def minute(max_count: int = 100, ttl: int = 60) -> Window:
    return Window("minute", "m1", ttl, max_count)


def day(max_count: int = 100, max_amount: int = 0, ttl: int = 60) -> Window:
    return Window("day", "d20260101", ttl, max_count, max_amount)


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[RiskCounters]:
    if request.param == "memory":
        backend: RiskCounters = MemoryRiskCounters()
    else:
        url = request.getfixturevalue("redis_server")
        backend = RedisRiskCounters(url, namespace=f"t:{uuid.uuid4().hex}:")
    try:
        yield backend
    finally:
        backend.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- the store contract ------------------------------------------------------------------
def test_reserves_until_the_count_is_full_then_names_the_window(store: RiskCounters) -> None:
    windows = (minute(max_count=3), day(max_count=10))
    assert [store.reserve(A, 100, windows) for _ in range(3)] == [None] * 3
    refused = store.reserve(A, 100, windows)
    assert refused is not None and (refused.window, refused.limit) == (windows[0], "count")
    assert store.usage(A, windows[0]) == (3, 300)
    assert store.usage(A, windows[1]) == (3, 300)  # the refusal changed no window


def test_amount_limit_refuses_what_does_not_fit_and_admits_what_does(store: RiskCounters) -> None:
    windows = (minute(), day(max_amount=2_500))
    assert store.reserve(A, 2_000, windows) is None
    refused = store.reserve(A, 501, windows)
    assert refused is not None and (refused.window.kind, refused.limit) == ("day", "amount")
    assert store.reserve(A, 500, windows) is None  # exactly the limit
    assert store.usage(A, windows[1]) == (2, 2_500)
    assert store.usage(A, windows[0]) == (2, 2_500)


def test_refusal_by_a_later_window_leaves_earlier_ones_untouched(store: RiskCounters) -> None:
    windows = (minute(max_count=100), day(max_count=1))
    assert store.reserve(A, 10, windows) is None
    refused = store.reserve(A, 10, windows)
    assert refused is not None and refused.window.kind == "day"
    assert store.usage(A, windows[0]) == (1, 10)  # the minute window was not counted


def test_release_gives_back_and_never_goes_below_zero(store: RiskCounters) -> None:
    windows = (minute(max_count=1), day())
    assert store.reserve(A, 700, windows) is None
    assert store.reserve(A, 700, windows) is not None
    store.release(A, 700, windows)
    assert store.usage(A, windows[0]) == (0, 0)
    assert store.reserve(A, 700, windows) is None  # room again
    store.release(A, 700, windows)
    store.release(A, 700, windows)  # one more than was reserved
    assert store.usage(A, windows[0]) == (0, 0)
    assert store.usage(A, windows[1]) == (0, 0)


def test_release_of_a_window_never_written_creates_nothing(store: RiskCounters) -> None:
    windows = (minute(), day())
    store.release(A, 5, windows)
    assert store.reserve(A, 5, windows) is None
    assert store.usage(A, windows[1]) == (1, 5)


def test_scopes_and_windows_are_apart(store: RiskCounters) -> None:
    full = (minute(max_count=1),)
    assert store.reserve(A, 1, full) is None
    assert store.reserve(A, 1, full) is not None
    assert store.reserve(B, 1, full) is None  # another merchant's user of the same name
    later = (Window("minute", "m2", 60, 1),)
    assert store.reserve(A, 1, later) is None  # the next minute is a new window


def test_windows_expire_after_their_ttl(store: RiskCounters) -> None:
    windows = (Window("minute", "m-short", 1, 1),)
    assert store.reserve(A, 1, windows) is None
    assert store.reserve(A, 1, windows) is not None
    time.sleep(1.3)
    assert store.usage(A, windows[0]) == (0, 0)
    assert store.reserve(A, 1, windows) is None


def test_concurrent_reservations_never_exceed_the_limit(store: RiskCounters) -> None:
    windows = (minute(max_count=7), day(max_amount=10_000))
    results: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def worker() -> None:
        start.wait()
        for _ in range(4):
            got = store.reserve(A, 100, windows)
            with lock:
                results.append(got)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r is None for r in results) == 7
    assert store.usage(A, windows[1]) == (7, 700)


def test_policy_windows_fit_the_store(store: RiskCounters) -> None:
    policy = RiskPolicy(max_per_user_per_minute=2, daily_max_count=3, daily_max_amount=10**12)
    now = time.time()
    windows = windows_at(policy, now)
    assert [w.kind for w in windows] == ["minute", "day"]
    assert 3_600 < windows[1].ttl_s <= 86_400 + 3_600
    assert store.reserve(A, 1, windows) is None
    assert store.reserve(A, 1, windows) is None
    refused = store.reserve(A, 1, windows)
    assert refused is not None and refused.window.kind == "minute"
    # a minute later the velocity window is new; the day window still holds two
    next_minute = windows_at(policy, now + 60)
    assert store.reserve(A, 1, next_minute) is None
    refused = store.reserve(A, 1, next_minute)
    assert refused is not None and (refused.window.kind, refused.limit) == ("day", "count")


# -- Redis specifics -----------------------------------------------------------------------
def test_redis_stores_share_counters_across_clients_and_keep_namespaces_apart(
    redis_server: str,
) -> None:
    ns = f"t:{uuid.uuid4().hex}:"
    one, two = (
        RedisRiskCounters(redis_server, namespace=ns),
        RedisRiskCounters(redis_server, namespace=ns),
    )
    other = RedisRiskCounters(redis_server, namespace=f"t:{uuid.uuid4().hex}:")
    try:
        windows = (minute(max_count=2),)
        assert one.reserve(A, 1, windows) is None
        assert two.reserve(A, 1, windows) is None  # another replica sees the first's count
        assert one.reserve(A, 1, windows) is not None
        assert other.reserve(A, 1, windows) is None  # another namespace: other counters
    finally:
        for s in (one, two, other):
            s.close()


def test_redis_keys_are_namespaced_expire_and_share_a_cluster_slot(redis_server: str) -> None:
    ns = f"t:{uuid.uuid4().hex}:"
    store = RedisRiskCounters(redis_server, namespace=ns)
    client = redis.Redis.from_url(redis_server)
    try:
        assert store.reserve(A, 1, (minute(ttl=90), day(ttl=5000))) is None
        keys = sorted(k.decode() for k in client.scan_iter(match=f"{ns}*"))
        assert keys == [f"{ns}{{{A}}}:d20260101", f"{ns}{{{A}}}:m1"]
        assert 0 < client.ttl(keys[1]) <= 90 and 90 < client.ttl(keys[0]) <= 5000
        # one hash tag per scope: every window of a scope in one Redis Cluster slot
        assert len({k.split("}")[0] for k in keys}) == 1
    finally:
        client.delete(*client.scan_iter(match=f"{ns}*"))
        client.close()
        store.close()


class CountingRedis(redis.Redis):
    """A real client that counts the commands it sends."""

    sent: list[str]

    def execute_command(self, *args, **options):
        self.sent.append(str(args[0]))
        return super().execute_command(*args, **options)


def test_redis_reservation_and_release_are_one_round_trip_each(redis_server: str) -> None:
    client = CountingRedis.from_url(redis_server)
    client.sent = []
    store = RedisRiskCounters(client, namespace=f"t:{uuid.uuid4().hex}:")
    try:
        windows = (minute(), day())
        assert store.reserve(A, 1, windows) is None  # scripts are loaded on first use
        store.release(A, 1, windows)
        client.sent.clear()
        assert store.reserve(A, 1, windows) is None
        assert client.sent == ["EVALSHA"]
        client.sent.clear()
        store.release(A, 1, windows)
        assert client.sent == ["EVALSHA"]
    finally:
        store.close()  # a client passed in is the caller's to close
        client.ping()
        client.close()


def test_unreachable_redis_raises_risk_unavailable_without_the_url() -> None:
    url = f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0"
    store = RedisRiskCounters(url, namespace="t:down:")
    try:
        started = time.monotonic()
        for call in (
            lambda: store.reserve(A, 1, (minute(),)),
            lambda: store.release(A, 1, (minute(),)),
            lambda: store.usage(A, minute()),
        ):
            with pytest.raises(RiskUnavailable) as caught:
                call()
            assert "hunter2" not in str(caught.value) and "127.0.0.1" not in str(caught.value)
            assert caught.value.code == "risk_unavailable"
        assert time.monotonic() - started < 3  # fails fast, no retry loop
    finally:
        store.close()


def test_make_risk_counters_picks_the_backend_by_url(redis_server: str) -> None:
    assert isinstance(make_risk_counters(None), MemoryRiskCounters)
    assert isinstance(make_risk_counters("memory://"), MemoryRiskCounters)
    built = make_risk_counters(redis_server, namespace="t:x:")
    assert isinstance(built, RedisRiskCounters) and built.namespace == "t:x:"
    built.close()
    with pytest.raises(ValueError, match="'mysql'"):
        make_risk_counters("mysql://user:pw@host/db")


def test_make_risk_counters_uses_the_client_the_composition_root_hands_in(
    redis_server: str,
) -> None:
    """The runtime builds one Redis client per process; the risk counters run on it
    (every command goes through it) and leave it open when they close."""
    client = CountingRedis.from_url(redis_server)
    client.sent = []
    store = make_risk_counters(redis_server, namespace=f"t:{uuid.uuid4().hex}:", client=client)
    try:
        assert isinstance(store, RedisRiskCounters)
        assert store.reserve(A, 1, (minute(),)) is None
        assert "EVALSHA" in client.sent or "EVAL" in client.sent
    finally:
        store.close()
        client.ping()  # still open: the caller's to close
        client.close()
