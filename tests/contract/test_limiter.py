"""Contract tests for :class:`stability.limits.Limiter` over each limit store: scopes, every
rule of a resource, dry runs, live rule changes, validation."""

from __future__ import annotations

import time

import pytest
from limit_stores import (
    A,
    B,
    store,  # noqa: F401 - fixture
)

from stability.errors import RateLimited
from stability.limits import Limiter, LimitRule, LimitStore, MemoryLimitStore, make_limit_store
from stability.limits_redis import RedisLimitStore


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
