"""Notification deliveries are counted on the pay-link metrics (step ``notification``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from collectors import CoreMetrics
from paycore.notify.wire import failure_reason as _reason


def test_delivery_reasons_are_bounded():
    assert _reason("HTTP 503") == "http_5xx"
    assert _reason("HTTP 404") == "http_4xx"
    assert _reason("timeout") == "timeout"
    assert len(_reason("X" * 500)) <= 32


def test_core_metrics_accepts_the_notification_step():
    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    m.observe("notification", "error", "http_5xx", seconds=0.01)
    value = reg.get_sample_value(
        "paywatch_link_requests_total",
        {"step": "notification", "outcome": "error", "reason": "http_5xx", "pay_org": ""},
    )
    assert value == 1.0
