"""Contract tests for :mod:`paycore.locks`: every backend obeys the same rules."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from paycore.errors import LockBackendError, LockTimeout
from paycore.locks import DistributedLock, MemoryLock, RedisLock, make_lock

SHORT_TTL = 0.2


@pytest.fixture(params=["memory", "redis"])
def lock(request: pytest.FixtureRequest) -> Iterator[DistributedLock]:
    """The same contract runs against the in-process and the Redis backend."""
    if request.param == "memory":
        backend: DistributedLock = MemoryLock()
    else:
        backend = RedisLock(request.getfixturevalue("redis_url"))
    try:
        yield backend
    finally:
        backend.close()


def test_acquire_returns_hex_token_and_release_frees(lock: DistributedLock) -> None:
    token = lock.acquire("order:1", ttl=5, wait=0)
    assert token is not None
    assert len(token) == 32 and int(token, 16) >= 0
    assert lock.release("order:1", token) is True
    assert lock.release("order:1", token) is False  # already released


def test_second_acquire_fails_while_held_then_succeeds(lock: DistributedLock) -> None:
    token = lock.acquire("order:1", ttl=5, wait=0)
    assert token is not None
    assert lock.acquire("order:1", ttl=5, wait=0) is None  # not re-entrant either
    assert lock.acquire("order:2", ttl=5, wait=0) is not None  # keys are independent
    assert lock.release("order:1", token)
    again = lock.acquire("order:1", ttl=5, wait=0)
    assert again is not None and again != token


def test_acquire_with_wait_times_out(lock: DistributedLock) -> None:
    assert lock.acquire("k", ttl=5, wait=0) is not None
    started = time.monotonic()
    assert lock.acquire("k", ttl=5, wait=0.15) is None
    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 1.0


def test_wrong_token_cannot_release_or_extend(lock: DistributedLock) -> None:
    token = lock.acquire("k", ttl=5, wait=0)
    assert token is not None
    assert lock.release("k", "not-the-token") is False
    assert lock.extend("k", "not-the-token", 5) is False
    assert lock.acquire("k", ttl=5, wait=0) is None  # still held
    assert lock.release("k", token) is True


def test_release_and_extend_of_unheld_key(lock: DistributedLock) -> None:
    assert lock.release("never", "abc") is False
    assert lock.extend("never", "abc", 1) is False


def test_ttl_expiry_frees_the_lock(lock: DistributedLock) -> None:
    token = lock.acquire("k", ttl=SHORT_TTL, wait=0)
    assert token is not None
    time.sleep(SHORT_TTL + 0.15)
    other = lock.acquire("k", ttl=5, wait=0)
    assert other is not None
    # The expired owner can neither release nor extend the new holder's lock.
    assert lock.release("k", token) is False
    assert lock.extend("k", token, 5) is False
    assert lock.release("k", other) is True


def test_extend_keeps_the_lock(lock: DistributedLock) -> None:
    token = lock.acquire("k", ttl=SHORT_TTL, wait=0)
    assert token is not None
    assert lock.extend("k", token, 2.0) is True
    time.sleep(SHORT_TTL + 0.15)
    assert lock.acquire("k", ttl=5, wait=0) is None
    assert lock.release("k", token) is True


def test_hold_yields_token_and_releases(lock: DistributedLock) -> None:
    with lock.hold("k", ttl=5, wait=0) as token:
        assert isinstance(token, str) and len(token) == 32
        assert lock.acquire("k", ttl=5, wait=0) is None
    assert lock.acquire("k", ttl=5, wait=0) is not None


def test_hold_raises_lock_timeout_when_busy(lock: DistributedLock) -> None:
    assert lock.acquire("order:9", ttl=5, wait=0) is not None
    with pytest.raises(LockTimeout) as info, lock.hold("order:9", ttl=5, wait=0.05):
        pytest.fail("body must not run")  # pragma: no cover
    assert str(info.value) == "lock busy: order:9"
    assert info.value.code == "order_busy"


def test_hold_releases_on_exception(lock: DistributedLock) -> None:
    with pytest.raises(RuntimeError, match="boom"), lock.hold("k", ttl=5, wait=0):
        raise RuntimeError("boom")
    assert lock.acquire("k", ttl=5, wait=0) is not None


def test_waiter_gets_lock_promptly_after_release(lock: DistributedLock) -> None:
    token = lock.acquire("k", ttl=10, wait=0)
    assert token is not None
    result: dict[str, object] = {}
    started = threading.Event()

    def waiter() -> None:
        started.set()
        result["token"] = lock.acquire("k", ttl=10, wait=5)
        result["at"] = time.monotonic()

    thread = threading.Thread(target=waiter)
    thread.start()
    assert started.wait(2)
    time.sleep(0.2)  # the waiter is now blocked in acquire
    assert "token" not in result
    released_at = time.monotonic()
    assert lock.release("k", token)
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(result["token"], str)
    assert result["token"] != token
    latency = result["at"] - released_at  # type: ignore[operator]
    assert latency < 0.25


def test_mutual_exclusion_under_contention(lock: DistributedLock) -> None:
    threads_n, rounds = 20, 50
    state = {"count": 0, "inside": 0, "max_inside": 0}
    guard = threading.Lock()  # protects only the "inside" bookkeeping
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_n)

    def worker() -> None:
        try:
            barrier.wait(5)
            for _ in range(rounds):
                with lock.hold("counter", ttl=10, wait=30):
                    with guard:
                        state["inside"] += 1
                        state["max_inside"] = max(state["max_inside"], state["inside"])
                    current = state["count"]  # deliberately non-atomic read-modify-write
                    time.sleep(0)
                    state["count"] = current + 1
                    with guard:
                        state["inside"] -= 1
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(threads_n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    assert state["count"] == threads_n * rounds
    assert state["max_inside"] == 1


def test_redis_dead_server_raises_backend_error() -> None:
    backend = RedisLock("redis://127.0.0.1:1/0")
    try:
        for call in (
            lambda: backend.acquire("k", ttl=1, wait=0),
            lambda: backend.release("k", "t"),
            lambda: backend.extend("k", "t", 1),
        ):
            with pytest.raises(LockBackendError) as info:
                call()
            assert "127.0.0.1" not in str(info.value)
            assert str(info.value) == "lock backend unavailable"
            assert info.value.__cause__ is not None
    finally:
        backend.close()


def test_redis_close_leaves_borrowed_client_open(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        backend = RedisLock(client, namespace="test:")
        token = backend.acquire("k", ttl=5, wait=0)
        assert token is not None
        assert client.get("test:k") == token.encode()
        backend.close()
        assert client.ping()
    finally:
        client.close()


def test_memory_lock_uses_injected_clock() -> None:
    now = [100.0]
    backend = MemoryLock(clock=lambda: now[0])
    token = backend.acquire("k", ttl=5, wait=0)
    assert token is not None
    now[0] += 4.9
    assert backend.acquire("k", ttl=5, wait=0) is None
    now[0] += 0.2
    assert backend.acquire("k", ttl=5, wait=0) is not None
    assert backend.release("k", token) is False


@pytest.mark.parametrize("url", [None, "", "memory://"])
def test_make_lock_memory(url: str | None) -> None:
    assert isinstance(make_lock(url), MemoryLock)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/15", "rediss://h.example:6380/0"])
def test_make_lock_redis(url: str) -> None:
    backend = make_lock(url)  # no connection is made until first use
    try:
        assert isinstance(backend, RedisLock)
    finally:
        backend.close()


def test_make_lock_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="'postgresql'") as info:
        make_lock("postgresql://user:secret@db.internal/pay")
    message = str(info.value)
    assert "secret" not in message and "db.internal" not in message
