"""What the limit-store contract tests share: the store under test (memory, Redis with and
without combined round trips), keys' labels and a drain helper."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from stability.limits import LimitStore, MemoryLimitStore
from stability.limits_redis import RedisLimitStore

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
