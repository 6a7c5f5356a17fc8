"""Guard.availability: why a call would be refused now, without taking anything (no
limit token, no half-open probe, no bulkhead slot)."""

from __future__ import annotations

import pytest

from stability.breaker import BreakerConfig
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import BreakerOpen, DependencyFailed, RateLimited
from stability.guard import Guard
from stability.limits import LimitRule
from stability.switches import SwitchSnapshot


def boom():
    raise RuntimeError("down")


def make_guard(open_s: float = 3600, **kw) -> Guard:
    dmap = DependencyMap(
        [ResourceSpec("link.pay", "link", core_link=True), ResourceSpec("channel.A", "channel")],
        [EdgeSpec("link.pay", "channel.A", "strong", 100)],
    )
    cfg = BreakerConfig(window_size=4, min_calls=2, open_s=open_s, half_open_probes=1)
    return Guard(dmap, breaker_config=cfg, **kw)


def trip(g: Guard) -> None:
    for _ in range(2):
        with pytest.raises(DependencyFailed):
            g.call("channel.A", boom, caller="link.pay")


def test_a_plain_resource_looks_available() -> None:
    assert make_guard().availability("channel.A") is None
    assert make_guard().availability("channel.unknown") is None


def test_degraded_then_reverted() -> None:
    g = make_guard()
    g.apply(SwitchSnapshot(version=1, degraded=frozenset({"channel.A"})))
    assert g.availability("channel.A") == "degraded"
    g.apply(SwitchSnapshot(version=2))
    assert g.availability("channel.A") is None


def test_forced_open_breaker_and_release() -> None:
    g = make_guard()
    g.apply(SwitchSnapshot(version=1, forced={"channel.A": "forced_open"}))
    assert g.availability("channel.A") == "breaker_open"
    g.apply(SwitchSnapshot(version=2))
    assert g.availability("channel.A") is None


def test_an_open_breaker() -> None:
    g = make_guard()
    trip(g)
    assert g.breaker("channel.A").state == "open"
    assert g.availability("channel.A") == "breaker_open"


def test_a_half_open_breakers_probe_is_not_taken() -> None:
    g = make_guard(open_s=0)
    trip(g)
    for _ in range(3):
        assert g.availability("channel.A") is None  # half open: a probe may go
    g.admit("channel.A", caller="link.pay")  # the one probe is still there
    with pytest.raises(BreakerOpen):
        g.admit("channel.A", caller="link.pay")


def test_a_full_bulkhead_and_no_slot_taken() -> None:
    g = make_guard(bulkheads={"channel.A": 1})
    assert g.availability("channel.A") is None
    assert g.in_flight("channel.A") == 0
    bulkhead = g.bulkhead("channel.A")
    assert bulkhead is not None and bulkhead.try_enter()
    assert g.availability("channel.A") == "bulkhead_full"
    bulkhead.leave()
    assert g.availability("channel.A") is None


def test_asking_takes_no_limit_token() -> None:
    rule = LimitRule(name="a", resource="channel.A", rate=0.001, burst=1)
    g = make_guard(base_rules=[rule])
    for _ in range(5):
        assert g.availability("channel.A") is None
    g.admit("channel.A", caller="link.pay")  # the one token is still there
    with pytest.raises(RateLimited):
        g.admit("channel.A", caller="link.pay")


# -- a breaker opened on another replica (a shared breaker store) --------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_sync_adopts_the_shared_state_without_taking_a_probe() -> None:
    from stability.breaker import CircuitBreaker
    from stability.breaker_store import MemoryBreakerStateStore

    store, clock = MemoryBreakerStateStore(), Clock()
    cfg = BreakerConfig(window_size=4, min_calls=2, open_s=10, half_open_probes=1)
    a = CircuitBreaker("channel.A", cfg, store=store, clock=clock, sync_s=0.5)
    b = CircuitBreaker("channel.A", cfg, store=store, clock=clock, sync_s=0.5)
    assert b.sync() == "closed"
    for _ in range(2):
        assert a.allow()
        a.record(False, 0.01)
    assert a.state == "open"
    assert b.sync() == "closed"  # read 0 s ago: the next read is due after sync_s
    clock.now += 0.5
    assert b.sync() == "open" and b.state == "open"  # adopted, as allow() would
    clock.now += 10  # cool-down over: half open, and asking takes no probe
    for _ in range(3):
        assert b.sync() == "half_open"
    assert b.allow() and not b.allow()  # the one probe was still there
    lone = CircuitBreaker("x", cfg, clock=clock)
    assert lone.sync() == "closed"  # no store: the local state


def test_two_guards_sharing_a_store_see_each_others_open_breaker() -> None:
    import time

    from stability.breaker_store import MemoryBreakerStateStore

    store = MemoryBreakerStateStore()
    one, other = make_guard(breaker_store=store), make_guard(breaker_store=store)
    assert other.availability("channel.A") is None  # its breaker read the store: closed
    trip(one)
    assert one.availability("channel.A") == "breaker_open"
    deadline = time.monotonic() + 1.0  # the promise: within a second of the flip
    while other.availability("channel.A") is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert other.availability("channel.A") == "breaker_open"
    assert other.breaker("channel.A").state == "open"  # adopted, not just reported
    with pytest.raises(BreakerOpen):
        other.admit("channel.A", caller="link.pay")
