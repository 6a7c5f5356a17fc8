"""Routing metrics: decisions and fallbacks per rule and org, exposed on the registry
they were given, with bounded labels."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, generate_latest

from collectors.routing_metrics import RoutingMetrics


def test_decisions_and_fallbacks_are_exposed_as_counters() -> None:
    registry = CollectorRegistry()
    m = RoutingMetrics(registry)
    m.decided("r1", "SANDBOX_A")
    m.decided("r1", "SANDBOX_A")
    m.fell_back("r1", "SANDBOX_A", "SANDBOX_B", "degraded")
    m.decided("r1", "SANDBOX_B")
    text = generate_latest(registry).decode()
    assert 'paywatch_routing_decisions_total{pay_org="SANDBOX_A",rule="r1"} 2.0' in text
    assert (
        'paywatch_routing_fallbacks_total{from_org="SANDBOX_A",reason="degraded",'
        'rule="r1",to_org="SANDBOX_B"} 1.0' in text
    )
    assert "# TYPE paywatch_routing_decisions_total counter" in text
    assert m.decision_count("r1", "SANDBOX_B") == 1
    assert m.decision_count("r2", "SANDBOX_B") == 0


def test_counting_from_threads_loses_nothing() -> None:
    m = RoutingMetrics(CollectorRegistry())

    def work() -> None:
        for _ in range(5000):
            m.decided("r1", "SANDBOX_A")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert m.decision_count("r1", "SANDBOX_A") == 40_000


def test_labels_are_bounded() -> None:
    registry = CollectorRegistry()
    m = RoutingMetrics(registry, max_rules=2)
    for i in range(5):
        m.decided(f"rule{chr(97 + i)}", "SANDBOX_A")
    text = generate_latest(registry).decode()
    assert 'rule="other"} 3.0' in text  # the rules past the cap share one series
