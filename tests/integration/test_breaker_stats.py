"""Breaker windows published for the console, on SQLite and PostgreSQL: by each process (and
by a started stability runtime), rewritten only when changed or at the heartbeat."""

from __future__ import annotations

from datetime import UTC, datetime

from conftest import Clock


def test_breaker_windows_are_published_for_the_console(migrated_db):
    """Each process writes its breakers' windows; unchanged windows are not rewritten until
    the heartbeat; a stopped process removes its rows."""
    from stability.breaker import BreakerConfig, CircuitBreaker
    from stability.breaker_stats import BreakerStatsPublisher, read_stats

    clock = Clock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    risk = CircuitBreaker("risk", BreakerConfig(window_size=10, min_calls=10))
    idle = CircuitBreaker("coupon")  # no calls: nothing to show
    pub = BreakerStatsPublisher(
        migrated_db.engine,
        lambda: {"risk": risk, "coupon": idle},
        node="api-1",
        heartbeat_s=30,
        clock=clock,
    )
    other = BreakerStatsPublisher(
        migrated_db.engine, lambda: {"risk": risk}, node="api-2", clock=clock
    )
    for ok in (True, False, True):
        risk.record(ok, 0.01)
    risk.record(True, 5.0)  # slow
    assert pub.publish_once() == 1 and other.publish_once() == 1
    rows = read_stats(migrated_db.engine)
    assert [(r.resource, r.node, r.state, r.calls, r.failures, r.slow_calls) for r in rows] == [
        ("risk", "api-1", "closed", 4, 1, 1),
        ("risk", "api-2", "closed", 4, 1, 1),
    ]
    assert rows[0].updated_at == clock.now and rows[0].window_size == 10
    clock.advance(5)
    assert pub.publish_once() == 0  # nothing changed, heartbeat not due
    risk.record(False, 0.01)
    assert pub.publish_once() == 1
    clock.advance(30)
    assert pub.publish_once() == 1  # heartbeat: rewritten although unchanged
    assert read_stats(migrated_db.engine)[0].updated_at == clock.now
    pub.stop()
    assert [r.node for r in read_stats(migrated_db.engine)] == ["api-2"]


def test_a_started_stability_runtime_publishes_its_breakers(migrated_db):
    """The wiring: every process that starts its stability layer (API, worker, up) publishes
    its breaker windows; closing it removes them."""
    from runtime.wiring import build_stability
    from stability.breaker_stats import read_stats

    rt = build_stability(migrated_db.engine, pay_orgs=("SANDBOX_A",), redis_url=None)
    rt.start()
    try:
        for ok in (True, True, False):
            rt.guard.record("risk", "link.pay", ok, 0.01)
        assert rt.breaker_stats is not None and rt.breaker_stats.publish_once() == 1
        [row] = read_stats(migrated_db.engine)
        assert (row.resource, row.calls, row.failures) == ("risk", 3, 1)
    finally:
        rt.close()
    assert read_stats(migrated_db.engine) == []
