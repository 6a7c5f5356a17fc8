"""Core metrics around real pay-core operations (SQLite and PostgreSQL), then sampled
into the store of the same database and read back."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from collectors import PAY, TRADE_CREATE, CoreMetrics, Sampler, TimeSeriesStore

REQ = "paywatch_link_requests_total"


def test_timed_steps_around_real_payments(shop, core):
    from paycore import PayRequest, PayTool
    from paycore.errors import InsufficientBalance

    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    store = TimeSeriesStore(core.db.engine)
    sampler = Sampler(reg, store, instance="test")
    t0 = time.time()
    sampler.sample_once(t0)
    shop.fund("u1", 3_000)
    for i in range(4):  # 3 paid with balance, the 4th is refused: the balance is spent
        with m.timed(TRADE_CREATE):
            trade = shop.trade(amount=1_000, out_trade_no=f"m{i}")
        req = PayRequest(trade.out_trade_no, (PayTool("balance", 1_000),))
        if i < 3:
            with m.timed(PAY):
                assert core.payments.pay(shop.mid, req).status == "success"
        else:
            with pytest.raises(InsufficientBalance), m.timed(PAY):
                core.payments.pay(shop.mid, req)
    v = reg.get_sample_value
    base = {"reason": "", "pay_org": ""}
    assert v(REQ, {"step": "trade_create", "outcome": "ok", **base}) == 4
    assert v(REQ, {"step": "pay", "outcome": "ok", **base}) == 3
    assert (
        v(
            REQ,
            {"step": "pay", "outcome": "rejected", "reason": "insufficient_balance", "pay_org": ""},
        )
        == 1
    )
    assert v("paywatch_link_latency_seconds_count", {"step": "pay", "pay_org": ""}) == 4
    assert v("paywatch_link_latency_seconds_sum", {"step": "pay", "pay_org": ""}) > 0

    sampler.sample_once(t0 + 5)
    rows = store.ratio(
        REQ,
        REQ,
        window=60,
        at=t0 + 5,
        match_num={"outcome": "ok"},
        match_den={"step": "pay"},
        by=("step",),
    )
    assert [(r.labels, r.value) for r in rows if r.labels["step"] == "pay"] == [
        ({"step": "pay"}, pytest.approx(0.75))
    ]
    p99 = store.quantile(
        0.99, "paywatch_link_latency_seconds", window=60, at=t0 + 5, match={"step": "pay"}
    )
    assert p99[0].value is not None and 0 < p99[0].value <= 10
