"""Contract tests for :mod:`backends`: one registry of URL schemes for every kind of backend
(locks, limit stores, breaker stores, metric stores), one Redis client handed to all, and
driver errors surfacing as each package's storage error, a :class:`BackendError`."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

import backends
from backends import (
    BREAKER_STORE,
    LIMITS,
    LOCK,
    METRIC_STORE,
    BackendError,
    DriverErrors,
    UnknownBackend,
    from_url,
    register,
    scheme_of,
)
from collectors import (
    PrometheusQuery,
    QueryBackendError,
    QueryError,
    StoreError,
    TimeSeriesStore,
    make_query,
)
from paycore.errors import LockBackendError
from paycore.locks import MemoryLock, RedisLock, make_lock
from stability import (
    BreakerSnapshot,
    BreakerStoreUnavailable,
    LimitBackendUnavailable,
    MemoryBreakerStateStore,
    MemoryLimitStore,
    RedisBreakerStateStore,
    RedisLimitStore,
    make_breaker_store,
    make_limit_store,
)

DEAD_REDIS = "redis://:secret@127.0.0.1:1/0"  # nothing listens on port 1
DEAD_PG = "postgresql+psycopg://postgres:secret@127.0.0.1:1/test?connect_timeout=1"

#: kind -> every backend registered for it; the contract fixtures (test_locks.py,
#: limit_stores.py, test_breakers.py, tests/integration/test_collectors_store.py and
#: test_collectors_prometheus.py) run each one, so a new backend must be added there too
EVERY_BACKEND = {
    LOCK: {"MemoryLock", "RedisLock"},
    LIMITS: {"MemoryLimitStore", "RedisLimitStore"},
    BREAKER_STORE: {"MemoryBreakerStateStore", "RedisBreakerStateStore"},
    METRIC_STORE: {"sql_metric_store", "prometheus_metric_store"},
}


def _close(backend: object) -> None:
    close = getattr(backend, "close", None)
    if close is not None:
        close()


# -- resolution ----------------------------------------------------------------------------


def test_every_kind_is_registered_with_the_backends_the_contracts_run() -> None:
    assert set(EVERY_BACKEND) <= set(backends.kinds())
    for kind, names in EVERY_BACKEND.items():
        found = {backends.lookup(kind, f"{s}://x").__name__ for s in backends.schemes(kind)}
        assert found == names, kind


@pytest.mark.parametrize(
    ("kind", "url", "expected"),
    [
        (LOCK, None, MemoryLock),
        (LOCK, "", MemoryLock),
        (LOCK, "memory://", MemoryLock),
        (LOCK, "redis://127.0.0.1:6379/15", RedisLock),
        (LOCK, "rediss://h.example:6380/0", RedisLock),
        (LOCK, "unix:///run/redis.sock", RedisLock),
        (LIMITS, None, MemoryLimitStore),
        (LIMITS, "memory", MemoryLimitStore),
        (LIMITS, "REDIS://127.0.0.1:6379/15", RedisLimitStore),
        (BREAKER_STORE, "memory://", MemoryBreakerStateStore),
        (BREAKER_STORE, "redis://127.0.0.1:6379/15", RedisBreakerStateStore),
        (METRIC_STORE, "sqlite://", TimeSeriesStore),
        (METRIC_STORE, "sqlite+pysqlite:///var/metrics.db", TimeSeriesStore),
        (METRIC_STORE, "postgresql+psycopg://u:p@127.0.0.1:1/x", TimeSeriesStore),
        (METRIC_STORE, "http://prometheus:9090", PrometheusQuery),
        (METRIC_STORE, "https://prometheus.example", PrometheusQuery),
    ],
)
def test_each_kind_resolves_its_schemes_to_the_right_class(
    kind: str, url: str | None, expected: type
) -> None:
    backend = from_url(kind, url)  # nothing connects before first use
    try:
        assert type(backend) is expected
    finally:
        _close(backend)


@pytest.mark.parametrize("kind", [LOCK, LIMITS, BREAKER_STORE, METRIC_STORE])
def test_an_unknown_scheme_names_it_and_the_known_ones_but_not_the_url(kind: str) -> None:
    with pytest.raises(UnknownBackend) as info:
        from_url(kind, "zk://admin:hunter2@zk.internal:2181/pay")
    message = str(info.value)
    assert "'zk'" in message and kind in message
    for scheme in backends.schemes(kind):
        assert scheme in message
    assert "hunter2" not in message and "zk.internal" not in message
    assert isinstance(info.value, ValueError)  # callers of the old factories catch that


def test_an_unknown_kind_names_the_known_kinds() -> None:
    with pytest.raises(UnknownBackend, match="'queue'") as info:
        from_url("queue", "redis://x")
    for kind in (LOCK, LIMITS, BREAKER_STORE, METRIC_STORE):
        assert kind in str(info.value)


def test_the_packages_factories_go_through_the_registry() -> None:
    with pytest.raises(UnknownBackend, match="'mysql'"):
        make_limit_store("mysql://x")
    with pytest.raises(UnknownBackend, match="'zk'"):
        make_breaker_store("zk://x")
    with pytest.raises(UnknownBackend, match="'postgresql'"):
        make_lock("postgresql://user:secret@db.internal/pay")
    assert isinstance(make_query("http://prom:9090", None), PrometheusQuery)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        (None, "memory"),
        ("", "memory"),
        ("MEMORY", "memory"),
        ("memory://", "memory"),
        ("Redis://h:1/0", "redis"),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg"),
        ("unix:///tmp/redis.sock", "unix"),
        ("no-scheme-here", ""),
    ],
)
def test_scheme_of(url: str | None, scheme: str) -> None:
    assert scheme_of(url) == scheme


def test_a_taken_scheme_cannot_be_registered_again_by_another_backend() -> None:
    kind = f"test kind {uuid.uuid4().hex}"

    @register(kind, "x", "y")
    class First:
        def __init__(self, url: str, **deps: object) -> None:
            self.url, self.deps = url, deps

    with pytest.raises(ValueError, match="already"):

        @register(kind, "y")
        class Second:
            pass

    built = from_url(kind, "X://host", client="c", engine=None)
    assert isinstance(built, First)
    assert built.url == "X://host" and built.deps == {"client": "c"}  # None deps left out
    assert backends.schemes(kind) == ["x", "y"]


# -- one live client handed to every backend -----------------------------------------------


@pytest.fixture
def client(redis_url: str) -> Iterator[object]:
    shared = backends.redis_client(redis_url)
    try:
        yield shared
    finally:
        shared.close()


def test_one_redis_client_serves_every_backend_and_stays_open(redis_url: str, client) -> None:
    ns = f"t:{uuid.uuid4().hex[:8]}:"
    lock = make_lock(redis_url, client=client, namespace=ns + "lock:")
    limits = make_limit_store(redis_url, client=client, namespace=ns + "limit:")
    breakers = make_breaker_store(redis_url, client=client, namespace=ns + "breaker:")

    token = lock.acquire("trade-1", ttl=5, wait=0)
    assert token is not None and client.get(ns + "lock:trade-1") == token.encode()
    assert limits.acquire("bucket", 1, 5).allowed
    assert client.exists(ns + "limit:bucket") == 1
    breakers.set("channel.A", BreakerSnapshot("open", 12.0))
    assert client.get(ns + "breaker:channel.A") is not None
    assert breakers.get("channel.A") == BreakerSnapshot("open", 12.0)

    for backend in (lock, limits, breakers):
        backend.close()
    assert client.ping()  # borrowed: closing a backend leaves the shared client open


def test_the_metric_store_uses_the_engine_handed_in() -> None:
    engine = sa.create_engine("sqlite://")
    try:
        store = from_url(METRIC_STORE, "sqlite://", engine=engine, sample_interval=2.0)
        assert store.engine is engine and store.sample_interval == 2.0
        assert make_query(None, engine).engine is engine
    finally:
        engine.dispose()


# -- driver errors surface as the package's storage error ----------------------------------


def _redis_calls(kind: str):
    backend = from_url(kind, DEAD_REDIS)
    calls = {
        LOCK: [
            lambda: backend.acquire("k", ttl=1, wait=0),
            lambda: backend.release("k", "t"),
            lambda: backend.extend("k", "t", 1),
        ],
        LIMITS: [lambda: backend.acquire("k", 1, 5), lambda: backend.reset("k")],
        BREAKER_STORE: [
            lambda: backend.get("b"),
            lambda: backend.set("b", BreakerSnapshot("open", 1.0)),
        ],
    }[kind]
    return backend, calls


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        (LOCK, LockBackendError),
        (LIMITS, LimitBackendUnavailable),
        (BREAKER_STORE, BreakerStoreUnavailable),
    ],
)
def test_a_dead_redis_surfaces_as_the_packages_storage_error(kind: str, error: type) -> None:
    import redis

    backend, calls = _redis_calls(kind)
    try:
        for call in calls:
            with pytest.raises(error) as info:
                call()
            assert isinstance(info.value, BackendError)
            assert not isinstance(info.value, redis.RedisError)
            assert "secret" not in str(info.value) and "127.0.0.1" not in str(info.value)
    finally:
        backend.close()


def test_a_dead_database_surfaces_as_the_metric_stores_errors() -> None:
    store = from_url(METRIC_STORE, DEAD_PG)
    try:
        with pytest.raises(StoreError) as written:
            store.write([(1.0, "m", {}, 1.0)])
        assert isinstance(written.value, BackendError)
        assert isinstance(written.value.__cause__, sa.exc.OperationalError)
        with pytest.raises(QueryBackendError) as read:
            store.rate("m", window=60, at=100.0)
        assert isinstance(read.value, QueryError) and isinstance(read.value, BackendError)
        assert "secret" not in str(written.value) + str(read.value)
    finally:
        store.engine.dispose()


def test_a_dead_prometheus_surfaces_as_a_query_backend_error() -> None:
    query = from_url(METRIC_STORE, "http://127.0.0.1:1")
    try:
        with pytest.raises(QueryBackendError) as info:
            query.rate("m", window=60, at=100.0)
        assert isinstance(info.value, BackendError)
    finally:
        query.close()


def test_driver_errors_wraps_driver_errors_only() -> None:
    import redis

    seen: list[BaseException] = []

    def to(exc: BaseException) -> BaseException:
        seen.append(exc)
        return StoreError("store down")

    wrap, hidden = DriverErrors(to), DriverErrors(to, chain=False)
    with pytest.raises(StoreError) as info, wrap:
        raise redis.ConnectionError("refused at 10.0.0.1")
    assert info.value.__cause__ is seen[0]
    with pytest.raises(StoreError) as info, hidden:
        raise ConnectionRefusedError("refused")
    assert info.value.__cause__ is None and info.value.__suppress_context__
    with pytest.raises(KeyError), wrap:  # a programming error is not the store failing
        raise KeyError("k")
    already = LimitBackendUnavailable("limit store unreachable")
    with pytest.raises(LimitBackendUnavailable) as passed, wrap:
        raise already
    assert passed.value is already  # a BackendError passes unchanged

    @wrap
    def read() -> None:
        raise redis.TimeoutError("slow")

    with pytest.raises(StoreError):
        read()
    assert len(seen) == 3
