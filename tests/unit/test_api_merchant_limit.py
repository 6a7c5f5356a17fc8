"""The API's per-merchant limit: stability's token bucket, and the project's one 429."""

from __future__ import annotations

import pytest

from paycore import errors as pe
from paycore.api.edge import MerchantRateLimit
from stability.errors import RateLimited


def test_the_merchant_limit_refuses_with_the_one_rate_limited_error() -> None:
    assert pe.RateLimited is RateLimited  # paycore re-exports stability's class
    now = [100.0]
    limit = MerchantRateLimit(rate=2, burst=3, clock=lambda: now[0])
    for _ in range(3):
        limit.check("m-1")
    with pytest.raises(RateLimited) as info:
        limit.check("m-1")
    assert info.value.retry_after == pytest.approx(0.5)  # one token at 2/s
    assert info.value.message == "rate limit exceeded" and info.value.resource is None
    limit.check("m-2")  # merchants have buckets of their own
    now[0] += 0.5
    limit.check("m-1")  # refilled: one token
    with pytest.raises(RateLimited):
        limit.check("m-1")
