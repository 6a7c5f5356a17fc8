"""The guard's order of checks and its outcomes, with in-process backends."""

from __future__ import annotations

import asyncio
import time

import pytest

from stability.breaker import BreakerConfig
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.errors import BreakerOpen, CallTimeout, DependencyFailed, RateLimited
from stability.guard import Guard, call_budget
from stability.limits import LimitRule
from stability.switches import SwitchSnapshot


class Business(Exception):
    pass


def make_guard(**kw) -> Guard:
    dmap = DependencyMap(
        [
            ResourceSpec("link.pay", "link", core_link=True),
            ResourceSpec("risk", "service"),
            ResourceSpec("channel.A", "channel"),
        ],
        [
            EdgeSpec("link.pay", "risk", "weak", 50, fallback="allow small"),
            EdgeSpec("link.pay", "channel.A", "strong", 100),
        ],
    )
    cfg = BreakerConfig(
        window_size=10,
        min_calls=4,
        failure_ratio=0.5,
        slow_call_s=0.05,
        slow_ratio=0.5,
        open_s=60,
        half_open_probes=2,
    )
    return Guard(dmap, breaker_config=cfg, ignore=(Business,), **kw)


def boom():
    raise RuntimeError("down")


def test_pass_records_and_hands_the_budget_to_the_callee():
    g = make_guard()
    assert g.call("channel.A", lambda: call_budget(9.0), caller="link.pay") == 0.1
    assert g.stats.count("channel.A", "pass") == 1


def test_weak_dependency_degrades_to_its_fallback_and_strong_fails_fast():
    g = make_guard()
    g.apply(SwitchSnapshot(version=1, degraded=frozenset({"risk", "channel.A"})))
    called = []
    assert (
        g.call("risk", lambda: called.append(1), caller="link.pay", fallback=lambda: "fallback")
        == "fallback"
    )
    assert not called and g.stats.count("risk", "degraded") == 1
    with pytest.raises(DependencyFailed) as info:
        g.call("channel.A", lambda: called.append(1), caller="link.pay")
    assert info.value.public_code == "dependency_unavailable:channel.A" and not called
    g.apply(SwitchSnapshot(version=2))
    assert g.call("risk", lambda: "real", caller="link.pay", fallback=lambda: "fb") == "real"


def test_errors_fall_back_for_weak_and_raise_for_strong_but_business_errors_pass_through():
    g = make_guard()
    assert g.call("risk", boom, caller="link.pay", fallback=lambda: "fb") == "fb"
    assert g.stats.count("risk", "fallback") == 1 and g.stats.count("risk", "error") == 1
    with pytest.raises(DependencyFailed):
        g.call("channel.A", boom, caller="link.pay")

    def business():
        raise Business("insufficient balance")

    for _ in range(10):
        with pytest.raises(Business):
            g.call("channel.A", business, caller="link.pay")
    assert g.breaker("channel.A").state == "closed"  # the caller's fault is no outage


def test_breaker_opens_on_errors_and_slow_calls_then_fails_fast():
    g = make_guard()
    for _ in range(4):
        with pytest.raises(DependencyFailed):
            g.call("channel.A", boom, caller="link.pay")
    assert g.breaker("channel.A").state == "open"
    calls = []
    with pytest.raises(BreakerOpen):
        g.call("channel.A", lambda: calls.append(1), caller="link.pay")
    assert not calls and g.stats.count("channel.A", "breaker_open") == 1
    assert g.stats.transitions[0][:3] == ("channel.A", "closed", "open")
    g2 = make_guard()
    for _ in range(4):  # slow calls: answered, but past slow_call_s
        g2.call("risk", lambda: time.sleep(0.06), caller="link.pay", fallback=lambda: None)
    assert g2.breaker("risk").state == "open"
    assert g2.call("risk", boom, caller="link.pay", fallback=lambda: "fb") == "fb"


def test_forced_breaker_switch_and_release():
    g = make_guard()
    g.apply(SwitchSnapshot(version=1, forced={"channel.A": "forced_open"}))
    with pytest.raises(BreakerOpen):
        g.call("channel.A", lambda: 1, caller="link.pay")
    g.apply(SwitchSnapshot(version=2))
    assert g.call("channel.A", lambda: 1, caller="link.pay") == 1


def test_limits_block_strong_with_retry_after_and_dry_run_only_counts():
    rules = [
        LimitRule("ch", "channel.A", rate=1, burst=2),
        LimitRule("rk", "risk", rate=1, burst=1, dry_run=True),
    ]
    g = make_guard(base_rules=rules)
    g.call("channel.A", lambda: 1, caller="link.pay")
    g.call("channel.A", lambda: 1, caller="link.pay")
    with pytest.raises(RateLimited) as info:
        g.call("channel.A", lambda: 1, caller="link.pay")
    assert info.value.retry_after > 0 and g.stats.count("channel.A", "blocked") == 1
    for _ in range(3):
        assert g.call("risk", lambda: "ran", caller="link.pay", fallback=lambda: "fb") == "ran"
    assert g.stats.count("risk", "dry_run_blocked") == 2
    g.apply(SwitchSnapshot(version=1, limits={"ch": {"rate": 1000, "burst": 1000}}))
    time.sleep(0.01)  # the bucket refills at the new rate from here
    assert g.call("channel.A", lambda: 1, caller="link.pay") == 1  # limit raised live
    g.apply(
        SwitchSnapshot(
            version=2, dry_run=frozenset({"ch"}), limits={"ch": {"rate": 0.001, "burst": 1}}
        )
    )
    for _ in range(3):
        assert g.call("channel.A", lambda: 1, caller="link.pay") == 1


def test_async_call_enforces_the_timeout():
    g = make_guard()

    async def slow():
        await asyncio.sleep(1)

    with pytest.raises(CallTimeout):
        asyncio.run(g.acall("channel.A", slow, caller="link.pay"))
    assert asyncio.run(g.acall("risk", slow, caller="link.pay", fallback=lambda: "fb")) == "fb"
    assert g.stats.count("risk", "fallback") == 1


def test_unknown_edge_is_refused():
    from stability.errors import UnknownResource

    with pytest.raises(UnknownResource):
        make_guard().call("channel.Z", lambda: 1, caller="link.pay")


class _DeadStore:
    """A limit store whose backend is always unreachable."""

    def take(self, *a, **kw):
        from stability.errors import LimitBackendUnavailable

        raise LimitBackendUnavailable("down", resource="redis")

    acquire = take_valid = take


def test_inline_path_limits_weak_by_scope_and_applies_each_policy():
    from stability.limits import Limiter

    scoped = LimitRule("rk", "risk", rate=0.001, burst=1, scope=("merchant_id",))
    g = make_guard(base_rules=[scoped])
    a, b = {"merchant_id": "m-a"}, {"merchant_id": "m-b"}
    assert (
        g.call("risk", lambda: "ran", caller="link.pay", labels=a, fallback=lambda: "fb") == "ran"
    )
    assert g.call("risk", lambda: "ran", caller="link.pay", labels=a, fallback=lambda: "fb") == "fb"
    assert (
        g.call("risk", lambda: "ran", caller="link.pay", labels=b, fallback=lambda: "fb") == "ran"
    )
    assert g.stats.count("risk", "blocked") == 0 and g.stats.count("risk", "fallback") == 1

    for policy, expect in (("fail_open", "ran"), ("fail_closed", "fb")):
        rule = LimitRule("rk", "risk", rate=1, burst=1, policy=policy)
        dead = make_guard(base_rules=[rule], limiter=Limiter(_DeadStore(), [rule]))
        got = dead.call("risk", lambda: "ran", caller="link.pay", fallback=lambda: "fb")
        assert got == expect, policy


def test_inline_and_admit_paths_agree():
    """The same calls through call() (inline when it can) and through admit()+record()."""
    rules = [LimitRule("ch", "channel.A", rate=0.001, burst=3)]
    inline, general = make_guard(base_rules=rules), make_guard(base_rules=rules)
    outcomes = []
    for g in (inline, general):
        seen = []
        for i in range(5):
            try:
                if g is inline:
                    seen.append(g.call("channel.A", lambda i=i: i, caller="link.pay"))
                else:
                    route, refusal = g.admit("channel.A", caller="link.pay")
                    g.record("channel.A", "link.pay", True, 0.001)
                    seen.append(i)
            except RateLimited as exc:
                seen.append(("limited", exc.retry_after > 0))
        outcomes.append(
            (seen, g.stats.count("channel.A", "pass"), g.stats.count("channel.A", "blocked"))
        )
    assert outcomes[0] == outcomes[1] == ([0, 1, 2, ("limited", True), ("limited", True)], 3, 2)
