"""Per-edge guard metrics, bulkhead gauges and the channel front's families on CoreMetrics."""

from __future__ import annotations

import pytest
from metrics_registry import m, reg  # noqa: F401 - fixture

from collectors import LabelError

CALLS = "paywatch_guard_calls_total"
LAT = "paywatch_guard_call_latency_seconds"


def test_outcomes_are_counted_per_edge_and_bulkhead_full_is_known(reg, m):
    m.outcome("channel.A", "link.pay", "pass", 0.02)
    m.outcome("channel.A", "job.active_query", "error", 0.3)
    m.outcome("channel.A", "link.pay", "bulkhead_full", 0.0)
    edge = {"caller": "link.pay", "resource": "channel.A"}
    assert reg.get_sample_value(CALLS, {**edge, "outcome": "pass"}) == 1
    assert reg.get_sample_value(CALLS, {**edge, "outcome": "bulkhead_full"}) == 1
    job = {"caller": "job.active_query", "resource": "channel.A", "outcome": "error"}
    assert reg.get_sample_value(CALLS, job) == 1
    # the per-resource family keeps its labels, and knows the new outcome
    outcomes = "paywatch_guard_outcomes_total"
    full = {"resource": "channel.A", "outcome": "bulkhead_full"}
    assert reg.get_sample_value(outcomes, full) == 1
    assert reg.get_sample_value(outcomes, {"resource": "channel.A", "outcome": "other"}) is None


def test_latency_is_observed_for_answered_calls_only(reg, m):
    m.outcome("risk", "link.pay", "pass", 0.004)
    m.outcome("risk", "link.pay", "timeout", 0.4)
    m.outcome("risk", "link.pay", "fallback", 0.0)  # a refusal's 0 s would pull p99 down
    m.outcome("risk", "link.pay", "breaker_open", 0.0)
    edge = {"caller": "link.pay", "resource": "risk"}
    assert reg.get_sample_value(f"{LAT}_count", edge) == 2
    assert reg.get_sample_value(f"{LAT}_sum", edge) == pytest.approx(0.404)
    assert reg.get_sample_value(f"{LAT}_bucket", {**edge, "le": "0.005"}) == 1


def test_callers_are_bounded(reg):
    from prometheus_client import CollectorRegistry

    from collectors import CoreMetrics

    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    for i in range(70):
        m.outcome("risk", f"caller-{i}", "pass", 0.001)
    callers = {
        s.labels["caller"]
        for fam in reg.collect()
        if fam.name == "paywatch_guard_calls"
        for s in fam.samples
        if s.name == CALLS
    }
    assert len(callers) == 65 and "other" in callers
    assert reg.get_sample_value("paywatch_label_overflow_total", {"label": "caller"}) == 6


def test_bulkheads_are_read_at_scrape_time(reg, m):
    state = {"channel.SANDBOX_A": (3, 8)}
    m.edges.track_bulkheads(lambda: dict(state))
    flying, cap = "paywatch_bulkhead_in_flight", "paywatch_bulkhead_limit"
    assert reg.get_sample_value(flying, {"resource": "channel.SANDBOX_A"}) == 3
    assert reg.get_sample_value(cap, {"resource": "channel.SANDBOX_A"}) == 8
    state["channel.SANDBOX_A"] = (7, 8)
    assert reg.get_sample_value(flying, {"resource": "channel.SANDBOX_A"}) == 7
    m.edges.track_bulkheads(lambda: {"risk": (1, 4)})  # replaces, never registers twice
    assert reg.get_sample_value(flying, {"resource": "channel.SANDBOX_A"}) is None
    assert reg.get_sample_value(flying, {"resource": "risk"}) == 1


def test_channel_front_in_flight_and_refusals_per_org(reg, m):
    m.edges.set_front_in_flight("SANDBOX_A", 8)
    m.edges.set_front_in_flight("SANDBOX_B", 1)
    m.edges.front_refusal("SANDBOX_A")
    m.edges.front_refusal("SANDBOX_A", "cap")
    m.edges.front_refusal("SANDBOX_B", "closed")
    assert reg.get_sample_value("paywatch_channel_front_in_flight", {"pay_org": "SANDBOX_A"}) == 8
    refused = "paywatch_channel_front_refused_total"
    assert reg.get_sample_value(refused, {"pay_org": "SANDBOX_A", "reason": "cap"}) == 2
    assert reg.get_sample_value(refused, {"pay_org": "SANDBOX_B", "reason": "closed"}) == 1
    with pytest.raises(LabelError):
        m.edges.front_refusal("SANDBOX_A", "because")
