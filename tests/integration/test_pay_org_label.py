"""The pay step is recorded under the trade's pay org, not the request's (which usually
names none), whether the pay succeeds or fails (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from collectors import CoreMetrics

REQ = "paywatch_link_requests_total"
LAT = "paywatch_link_latency_seconds_count"


def test_the_pay_step_carries_the_trades_pay_org(shop, core) -> None:
    from paycore import PayRequest, PayTool
    from paycore.errors import InsufficientBalance

    reg = CollectorRegistry()
    core.metrics = CoreMetrics(reg)
    org = shop.ORG
    shop.fund("u1", 1_000)  # a channel pay naming no org: the trade's
    paid = shop.trade(amount=1_000)
    core.payments.pay(shop.mid, PayRequest(paid.out_trade_no, (PayTool("balance", 1_000),)))
    refused = shop.trade(amount=5_000)
    with pytest.raises(InsufficientBalance):
        core.payments.pay(shop.mid, PayRequest(refused.out_trade_no, (PayTool("balance", 5_000),)))
    v = reg.get_sample_value
    assert v(REQ, {"step": "pay", "outcome": "pending", "reason": "", "pay_org": org}) == 1
    assert v(REQ, {"step": "pay", "outcome": "ok", "reason": "", "pay_org": org}) == 1
    rejected = {"step": "pay", "outcome": "rejected", "reason": "insufficient_balance"}
    assert v(REQ, {**rejected, "pay_org": org}) == 1
    assert v(LAT, {"step": "pay", "pay_org": org}) == 3
    assert not v(LAT, {"step": "pay", "pay_org": ""})  # only the zero-initialised series
