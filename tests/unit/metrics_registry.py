"""What the core-metrics unit tests share: a fresh registry, CoreMetrics on it, and readers of
the link's request counter and latency histogram."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from collectors import CoreMetrics

REQ = "paywatch_link_requests_total"
LAT = "paywatch_link_latency_seconds"


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def m(reg) -> CoreMetrics:
    return CoreMetrics(reg)


def req(reg, step, outcome="ok", reason="", pay_org=""):
    labels = {"step": step, "outcome": outcome, "reason": reason, "pay_org": pay_org}
    return reg.get_sample_value(REQ, labels)


def lat(reg, suffix, step, pay_org="", **extra):
    return reg.get_sample_value(f"{LAT}{suffix}", {"step": step, "pay_org": pay_org, **extra})
