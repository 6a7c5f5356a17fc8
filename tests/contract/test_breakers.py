"""Contract tests for :mod:`stability.breaker`, over each shared breaker-state store."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from stability.breaker import BreakerConfig, CircuitBreaker
from stability.breaker_store import (
    BreakerSnapshot,
    BreakerStateStore,
    BreakerStoreUnavailable,
    MemoryBreakerStateStore,
    RedisBreakerStateStore,
    make_breaker_store,
)

CFG = BreakerConfig(
    window_size=10,
    min_calls=5,
    failure_ratio=0.5,
    slow_call_s=1.0,
    slow_ratio=0.5,
    open_s=5.0,
    half_open_probes=3,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    store: BreakerStateStore
    clock: FakeClock = field(default_factory=FakeClock)
    events: list[tuple[str, str, str, str]] = field(default_factory=list)

    def make(
        self, name: str = "channel.A", config: BreakerConfig = CFG, **kw: Any
    ) -> CircuitBreaker:
        kw.setdefault("store", self.store)
        return CircuitBreaker(
            name, config, clock=self.clock, on_change=lambda *e: self.events.append(e), **kw
        )

    def moves(self) -> list[tuple[str, str]]:
        return [(frm, to) for _, frm, to, _ in self.events]


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[BreakerStateStore]:
    if request.param == "memory":
        backend: BreakerStateStore = MemoryBreakerStateStore()
    else:
        url = request.getfixturevalue("redis_url")
        backend = RedisBreakerStateStore(url, namespace=f"t:{uuid.uuid4().hex[:8]}:")
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def env(store: BreakerStateStore) -> Env:
    return Env(store)


def feed(breaker: CircuitBreaker, outcomes: str, slow_s: float = 2.0) -> None:
    """Record calls: ``s`` success, ``f`` failure, ``w`` slow success."""
    for c in outcomes:
        breaker.record(c != "f", slow_s if c == "w" else 0.01)


def open_breaker(env: Env, breaker: CircuitBreaker) -> None:
    feed(breaker, "fffff")
    assert breaker.state == "open"


def test_opens_on_error_ratio_only_after_min_calls(env: Env) -> None:
    b = env.make()
    feed(b, "ffff")
    assert b.state == "closed" and b.allow()  # 4 calls < min_calls, 100 % failed
    feed(b, "f")
    assert b.state == "open" and not b.allow()
    assert env.events[0][:3] == ("channel.A", "closed", "open")
    assert "failure ratio" in env.events[0][3]


def test_opens_on_slow_call_ratio(env: Env) -> None:
    b = env.make()
    feed(b, "wswsw")  # 3 of 5 slow (all succeeded)
    assert b.state == "open"
    assert "slow-call ratio" in env.events[0][3]
    b2 = env.make("channel.B")
    b2.record(True, 1.0)  # exactly slow_call_s counts as slow
    feed(b2, "wwss")
    assert b2.state == "open"


def test_stays_closed_below_thresholds_and_window_slides(env: Env) -> None:
    b = env.make()
    feed(b, "ffwwssssss")  # 20 % failed, 20 % slow
    assert b.state == "closed"
    feed(b, "ff")  # the window slides: w w s s s s s s f f → 20 % failed, 20 % slow
    assert b.state == "closed"
    feed(b, "ss" * 5 + "ffff")  # old failures slid out: 4 of the last 10
    assert b.state == "closed" and b.snapshot().failures == 4 and b.snapshot().calls == 10
    feed(b, "f")  # 5 of the last 10
    assert b.state == "open"


def test_open_refuses_until_cool_down_then_admits_n_probes(env: Env) -> None:
    b = env.make()
    open_breaker(env, b)
    opened_at = b.snapshot().opened_at
    assert opened_at == env.clock.now
    env.clock.advance(4.9)
    assert not b.allow()
    env.clock.advance(0.1)
    assert [b.allow() for _ in range(5)] == [True, True, True, False, False]
    assert b.state == "half_open"
    assert env.moves() == [("closed", "open"), ("open", "half_open")]


def test_n_successful_probes_close_with_a_fresh_window(env: Env) -> None:
    b = env.make()
    open_breaker(env, b)
    env.clock.advance(5)
    assert [b.allow() for _ in range(3)] == [True] * 3
    feed(b, "ss")
    assert b.state == "half_open"
    feed(b, "s")
    assert b.state == "closed" and b.snapshot().calls == 0 and b.allow()
    feed(b, "ffff")  # a fresh window: min_calls again
    assert b.state == "closed"


@pytest.mark.parametrize("bad_probe", ["f", "w"])
def test_a_failed_or_slow_probe_reopens(env: Env, bad_probe: str) -> None:
    b = env.make()
    open_breaker(env, b)
    env.clock.advance(5)
    assert b.allow() and b.allow()
    feed(b, "s" + bad_probe)
    assert b.state == "open" and not b.allow()
    assert b.snapshot().opened_at == env.clock.now  # the cool-down starts over
    feed(b, "s")  # a late result while open is ignored
    env.clock.advance(5)
    assert b.allow() and b.state == "half_open"
    assert env.moves()[-3:] == [("open", "half_open"), ("half_open", "open"), ("open", "half_open")]


def test_probes_that_never_finish_reopen(env: Env) -> None:
    b = env.make()
    open_breaker(env, b)
    env.clock.advance(5)
    assert [b.allow() for _ in range(4)] == [True, True, True, False]
    env.clock.advance(5)
    assert not b.allow() and b.state == "open"


def test_half_open_admits_exactly_n_probes_across_threads(env: Env) -> None:
    b = env.make()
    open_breaker(env, b)
    env.clock.advance(5)
    results: list[bool] = []
    start = threading.Barrier(16)

    def probe() -> None:
        start.wait()
        results.append(b.allow())

    threads = [threading.Thread(target=probe) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 3


def test_forced_states_override_and_release(env: Env) -> None:
    b = env.make()
    b.force("forced_open", "channel maintenance")
    assert not b.allow() and b.state == "forced_open"
    feed(b, "s" * 20)
    env.clock.advance(3600)
    assert not b.allow()  # no cool-down ends a forced open
    b.force("forced_closed", "the channel is fine, the errors are ours")
    feed(b, "f" * 20)
    assert b.allow() and b.state == "forced_closed"
    b.force(None, "incident over")
    assert b.state == "closed" and b.snapshot().calls == 0
    b.force(None, "again")  # releasing an unforced breaker changes nothing
    assert env.moves() == [
        ("closed", "forced_open"),
        ("forced_open", "forced_closed"),
        ("forced_closed", "closed"),
    ]
    assert env.events[0][3] == "forced: channel maintenance"
    with pytest.raises(ValueError):
        b.force("open", "not a forced state")
    with pytest.raises(ValueError):
        b.force("forced_open", " ")


def test_force_from_open_and_release_to_closed(env: Env) -> None:
    b = env.make()
    open_breaker(env, b)
    b.force("forced_closed", "override")
    assert b.allow()
    b.force(None, "done")
    assert b.state == "closed" and b.allow()


def test_on_change_sees_every_transition_outside_the_lock(env: Env) -> None:
    seen: list[tuple[str, str, str]] = []
    holder: dict[str, CircuitBreaker] = {}

    def listener(name: str, frm: str, to: str, reason: str) -> None:
        seen.append((frm, to, holder["b"].state))  # would deadlock inside the lock
        assert reason

    b = CircuitBreaker("dep", CFG, store=env.store, clock=env.clock, on_change=listener)
    holder["b"] = b
    open_breaker(env, b)
    env.clock.advance(5)
    b.allow()
    feed(b, "f")
    env.clock.advance(5)
    for _ in range(3):
        assert b.allow()
    feed(b, "sss")
    assert seen == [
        ("closed", "open", "open"),
        ("open", "half_open", "half_open"),
        ("half_open", "open", "open"),
        ("open", "half_open", "half_open"),
        ("half_open", "closed", "closed"),
    ]


def test_a_failing_listener_does_not_break_the_breaker(env: Env) -> None:
    def boom(*_: str) -> None:
        raise RuntimeError("listener bug")

    b = CircuitBreaker("dep", CFG, clock=env.clock, on_change=boom)
    feed(b, "fffff")
    assert b.state == "open"


def test_another_process_sees_an_open_breaker_within_sync_s(env: Env) -> None:
    a, b = env.make(sync_s=0.5), env.make(sync_s=0.5)  # same name, same store
    assert a.allow() and b.allow()
    feed(a, "fffff")
    env.clock.advance(0.2)
    assert b.allow()  # not synced yet
    env.clock.advance(0.3)
    assert not b.allow() and b.state == "open"
    assert ("channel.A", "closed", "open", "opened by another process") in env.events
    # Both cool down; A's successful probes close the breaker for B as well.
    env.clock.advance(5)
    assert all(a.allow() for _ in range(3))
    feed(a, "sss")
    assert a.state == "closed"
    env.clock.advance(0.5)
    assert b.allow() and b.state == "closed"
    # A manual force travels too, and outranks B's own automatic state.
    a.force("forced_open", "maintenance")
    env.clock.advance(0.5)
    assert not b.allow() and b.state == "forced_open"
    a.force(None, "done")
    env.clock.advance(0.5)
    assert b.allow() and b.state == "closed"


def test_a_new_process_adopts_the_published_state(env: Env) -> None:
    a = env.make()
    open_breaker(env, a)
    late = env.make(sync_s=0)
    assert not late.allow() and late.state == "open"
    other_name = env.make("channel.OTHER", sync_s=0)
    assert other_name.allow()


def test_store_contract(store: BreakerStateStore) -> None:
    assert store.get("nope") is None
    store.set("x", BreakerSnapshot("open", 12.5, calls=7))
    assert store.get("x") == BreakerSnapshot("open", 12.5)
    store.set("x", BreakerSnapshot("closed"))
    assert store.get("x") == BreakerSnapshot("closed", None)
    with pytest.raises(ValueError):
        BreakerSnapshot("ajar")


def test_breaker_works_locally_when_redis_is_down() -> None:
    clock = FakeClock()
    dead = RedisBreakerStateStore("redis://:secret@127.0.0.1:1/0")
    with pytest.raises(BreakerStoreUnavailable) as info:
        dead.get("x")
    assert "secret" not in str(info.value)
    b = CircuitBreaker("dep", CFG, store=dead, clock=clock, sync_s=0)
    assert b.allow()
    feed(b, "fffff")
    assert not b.allow() and b.state == "open"
    clock.advance(5)
    assert all(b.allow() for _ in range(3))
    feed(b, "sss")
    assert b.allow() and b.state == "closed"
    dead.close()


def test_make_breaker_store(redis_url: str) -> None:
    assert isinstance(make_breaker_store(None), MemoryBreakerStateStore)
    assert isinstance(make_breaker_store("memory://"), MemoryBreakerStateStore)
    s = make_breaker_store(redis_url)
    assert isinstance(s, RedisBreakerStateStore)
    s.close()
    with pytest.raises(ValueError):
        make_breaker_store("zk://x")


@pytest.mark.parametrize(
    "bad",
    [
        dict(window_size=0),
        dict(min_calls=0),
        dict(min_calls=30),
        dict(failure_ratio=0),
        dict(slow_ratio=1.5),
        dict(slow_call_s=0),
        dict(open_s=-1),
        dict(half_open_probes=0),
    ],
)
def test_config_validation(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        BreakerConfig(**bad)  # type: ignore[arg-type]


def test_without_a_store(env: Env) -> None:
    b = env.make(store=None)
    open_breaker(env, b)
    env.clock.advance(5)
    assert b.allow() and b.state == "half_open"


def test_lock_free_good_calls_keep_the_window_counts_exact() -> None:
    """Good calls into a clean window skip the lock; failures recorded at the same time
    from other threads must still be counted exactly (the window is recounted)."""
    import threading

    from stability.breaker import BreakerConfig, CircuitBreaker

    cfg = BreakerConfig(window_size=50, min_calls=50, failure_ratio=1.0, slow_ratio=1.0)
    for _ in range(20):
        b = CircuitBreaker("x", cfg)
        start = threading.Barrier(9)

        def run(b: CircuitBreaker, start: threading.Barrier, ok: bool, n: int) -> None:
            start.wait()
            for _ in range(n):
                b.record(ok, 0.0)

        threads = [threading.Thread(target=run, args=(b, start, True, 400)) for _ in range(8)]
        threads.append(threading.Thread(target=run, args=(b, start, False, 3)))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        window = list(b._window)
        assert b._failures == sum(f for f, _ in window) and b._slow == 0
        assert len(window) == 50 and b.state == "closed"
