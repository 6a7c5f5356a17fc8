"""Core-link metrics on a fresh CollectorRegistry: values after observe/timed calls and
bounded labels."""

from __future__ import annotations

import re

import pytest
from metrics_registry import REQ, lat, m, reg, req  # noqa: F401 - fixture

from collectors import (
    LATENCY_BUCKETS,
    STEPS,
    BusinessSnapshot,
    CoreMetrics,
    LabelError,
    error_reason,
    metrics_response,
)


class Coded(Exception):
    code = "channel_declined"


class Refused(Exception):
    code = "insufficient_balance"
    http_status = 409


class Business(Exception):
    pass


# -- link steps ------------------------------------------------------------------------------
def test_observe_counts_by_outcome_and_reason_and_fills_the_histogram(reg, m):
    m.observe("pay", "ok", seconds=0.004)
    m.observe("pay", "ok", seconds=0.030)
    m.observe("pay", "error", "channel_timeout", "SANDBOX_A", seconds=2.0)
    assert req(reg, "pay") == 2
    assert req(reg, "pay", "error", "channel_timeout", "SANDBOX_A") == 1
    assert lat(reg, "_count", "pay") == 2
    assert lat(reg, "_sum", "pay") == pytest.approx(0.034)
    assert lat(reg, "_bucket", "pay", le="0.005") == 1
    assert lat(reg, "_bucket", "pay", le="0.05") == 2
    assert lat(reg, "_bucket", "pay", "SANDBOX_A", le="1.0") == 0
    assert lat(reg, "_bucket", "pay", "SANDBOX_A", le="2.5") == 1
    assert lat(reg, "_bucket", "pay", "SANDBOX_A", le="+Inf") == 1


def test_main_series_are_zero_initialised(reg, m):
    for step in STEPS:
        assert req(reg, step) == 0
        assert lat(reg, "_count", step) == 0


def test_latency_buckets_span_1ms_to_10s():
    assert LATENCY_BUCKETS[0] == 0.001 and LATENCY_BUCKETS[-1] == 10.0
    assert list(LATENCY_BUCKETS) == sorted(LATENCY_BUCKETS)


def test_every_step_is_known_and_unknown_steps_and_outcomes_are_refused(reg, m):
    assert STEPS == (
        "trade_create",
        "pay",
        "channel_call",
        "callback",
        "refund",
        "ledger_posting",
        "notification",
    )
    for step in STEPS:
        m.observe(step, "ok", seconds=0.001)
        assert req(reg, step) == 1
    with pytest.raises(LabelError):
        m.observe("checkout", "ok", seconds=0.1)
    with pytest.raises(LabelError):
        m.observe("pay", "meh", seconds=0.1)
    with pytest.raises(LabelError):
        m.timed("checkout")


def test_timed_records_ok_and_the_latency(reg, m):
    with m.timed("ledger_posting"):
        pass
    assert req(reg, "ledger_posting") == 1
    assert lat(reg, "_count", "ledger_posting") == 1
    assert 0 <= lat(reg, "_sum", "ledger_posting") < 0.5


def test_timed_maps_exceptions_to_a_bounded_reason(reg, m):
    with pytest.raises(Coded), m.timed("channel_call", pay_org="SANDBOX_B"):
        raise Coded("declined for order 1234567890123")
    with pytest.raises(KeyError), m.timed("channel_call", pay_org="SANDBOX_B"):
        raise KeyError("x")
    with pytest.raises(Refused), m.timed("pay"):
        raise Refused()
    assert req(reg, "channel_call", "error", "channel_declined", "SANDBOX_B") == 1
    assert req(reg, "channel_call", "error", "KeyError", "SANDBOX_B") == 1
    assert req(reg, "pay", "rejected", "insufficient_balance") == 1  # 4xx: a refusal
    assert lat(reg, "_count", "channel_call", "SANDBOX_B") == 2


def test_configured_business_errors_count_as_rejected(reg):
    m = CoreMetrics(reg, rejected=(Business,))
    with pytest.raises(Business), m.timed("refund"):
        raise Business()
    assert req(reg, "refund", "rejected", "Business") == 1


def test_timed_outcome_can_be_set_inside_the_block(reg, m):
    with m.timed("channel_call", "SANDBOX_A") as t:
        t.outcome = "pending"
    assert req(reg, "channel_call", "pending", "", "SANDBOX_A") == 1


def test_error_reason_prefers_a_short_code():
    assert error_reason(Coded()) == "channel_declined"
    err = ValueError()
    err.code = "order 20240101000001"  # type: ignore[attr-defined]
    assert error_reason(err) == "ValueError"


def test_shadow_traffic_is_counted_apart(reg, m):
    m.shadow("pay")
    m.shadow("pay")
    assert reg.get_sample_value("paywatch_shadow_requests_total", {"step": "pay"}) == 2
    assert req(reg, "pay") == 0


# -- bounded labels --------------------------------------------------------------------------
def test_ids_never_become_label_values(reg, m):
    m.observe("pay", "error", "T202405011234567890", "SANDBOX_A", seconds=0.1)
    m.observe("pay", "ok", "", "5f0c2b9e-8d7a-4c1e-9b1a-3c2d1e0f9a8b", seconds=0.1)
    m.observe("pay", "ok", "", "merchant 42!", seconds=0.1)
    assert req(reg, "pay", "error", "other", "SANDBOX_A") == 1
    assert req(reg, "pay", "ok", "", "other") == 2
    overflow = "paywatch_label_overflow_total"
    assert reg.get_sample_value(overflow, {"label": "pay_org"}) >= 2
    assert reg.get_sample_value(overflow, {"label": "reason"}) >= 1


def test_distinct_pay_orgs_are_capped(reg):
    m = CoreMetrics(reg, max_pay_orgs=3)
    for org in ("ORG_A", "ORG_B", "ORG_C", "ORG_D", "ORG_E"):
        m.observe("channel_call", "ok", "", org, seconds=0.01)
    orgs = {
        s.labels["pay_org"]
        for f in reg.collect()
        if f.name == "paywatch_link_requests"
        for s in f.samples
        if s.name == REQ
    }
    assert orgs == {"", "ORG_A", "ORG_B", "ORG_C", "other"}


def test_no_label_value_of_a_busy_registry_looks_like_an_id(reg):
    m = CoreMetrics(reg, business=lambda: BusinessSnapshot(1, {"pending": 1}))
    for i in range(300):
        order_id = f"{1_700_000_000_000 + i}"
        m.observe("pay", "error", order_id, f"P{order_id}", seconds=0.001)
        m.guard_outcome(f"merchant-{order_id}", "link.pay", "pass", 0.001)
        with pytest.raises(RuntimeError), m.timed("callback"):
            raise RuntimeError(order_id)
    body, _ = metrics_response(reg)
    values = re.findall(rb'="([^"]*)"', body)
    assert values and not [v for v in values if re.search(rb"\d{6}", v)]
