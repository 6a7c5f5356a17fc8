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
