"""Guard and business metrics on a fresh CollectorRegistry: guard outcomes and breaker state
(recorded directly and by a real guard), business gauges from a cached snapshot."""

from __future__ import annotations

import pytest
from metrics_registry import m, reg  # noqa: F401 - fixture

from collectors import BusinessSnapshot, CoreMetrics, LabelError, metrics_response


# -- guard recorder --------------------------------------------------------------------------
def test_guard_outcomes_and_breaker_state(reg, m):
    m.guard_outcome("channel.A", "link.pay", "pass", 0.01)
    m.outcome("channel.A", "link.pay", "pass", 0.01)  # the name stability's Recorder calls
    m.guard_outcome("risk", "link.pay", "fallback", 0.0)
    m.guard_outcome("risk", "link.pay", "somethingelse", 0.0)
    g = "paywatch_guard_outcomes_total"
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "pass"}) == 2
    assert reg.get_sample_value(g, {"resource": "risk", "outcome": "fallback"}) == 1
    assert reg.get_sample_value(g, {"resource": "risk", "outcome": "other"}) == 1
    state = "paywatch_breaker_state"
    m.set_breaker_state("channel.A", "closed")
    assert reg.get_sample_value(state, {"resource": "channel.A"}) == 0
    tripped = "paywatch_breaker_tripped"
    assert reg.get_sample_value(tripped, {"resource": "channel.A"}) == 0
    for new, value, away in (
        ("open", 2, 1),
        ("half_open", 1, 1),
        ("forced_open", 3, 1),
        ("forced_closed", 4, 0),
        ("closed", 0, 0),
    ):
        m.breaker_changed("channel.A", "x", new, "because")
        assert reg.get_sample_value(state, {"resource": "channel.A"}) == value
        assert reg.get_sample_value(tripped, {"resource": "channel.A"}) == away, new
    tr = "paywatch_breaker_transitions_total"
    assert reg.get_sample_value(tr, {"resource": "channel.A", "state": "open"}) == 1
    with pytest.raises(LabelError):
        m.set_breaker_state("channel.A", "ajar")


def test_a_real_guard_reports_through_core_metrics(reg, m):
    from stability.breaker import BreakerConfig
    from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
    from stability.errors import DependencyFailed
    from stability.guard import Guard
    from stability.switches import SwitchSnapshot

    dmap = DependencyMap(
        [
            ResourceSpec("link.pay", "link", core_link=True),
            ResourceSpec("risk", "service"),
            ResourceSpec("channel.A", "channel"),
        ],
        [
            EdgeSpec("link.pay", "risk", "weak", 50, fallback="allow"),
            EdgeSpec("link.pay", "channel.A", "strong", 100),
        ],
    )
    cfg = BreakerConfig(window_size=4, min_calls=4, failure_ratio=0.5, open_s=60)
    guard = Guard(dmap, breaker_config=cfg, recorders=[m])

    def boom():
        raise RuntimeError("down")

    assert guard.call("channel.A", lambda: "ok", caller="link.pay") == "ok"
    for _ in range(4):
        with pytest.raises(DependencyFailed):
            guard.call("channel.A", boom, caller="link.pay")
    guard.apply(SwitchSnapshot(version=1, degraded=frozenset({"risk"})))
    assert guard.call("risk", lambda: "x", caller="link.pay", fallback=lambda: "fb") == "fb"
    g = "paywatch_guard_outcomes_total"
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "pass"}) == 1
    # pass + 3 errors fill the window at a 75 % failure ratio: the 4th call is refused
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "error"}) == 3
    assert reg.get_sample_value(g, {"resource": "channel.A", "outcome": "breaker_open"}) == 1
    assert reg.get_sample_value(g, {"resource": "risk", "outcome": "degraded"}) == 1
    assert reg.get_sample_value("paywatch_breaker_state", {"resource": "channel.A"}) == 2
    assert guard.stats.count("channel.A", "error") == 3  # same numbers as the guard's own


# -- business gauges -------------------------------------------------------------------------
class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_business_gauges_come_from_the_snapshot_and_are_cached(reg):
    calls = []

    def snapshot() -> BusinessSnapshot:
        calls.append(1)
        return BusinessSnapshot(
            processing_orders=7,
            compensation_backlog={"pending": 3, "retrying": 2},
            notification_backlog=5,
            pending_postings=11,
            recon_differences={"missing_local": 1, "amount_mismatch": 4},
            trial_balance_ok=False,
        )

    m = CoreMetrics(reg, business=snapshot)
    clock = FakeClock()
    assert m.business is not None
    m.business.clock = clock
    assert not calls  # registering does not query
    v = reg.get_sample_value
    assert v("paywatch_orders_processing") == 7
    assert v("paywatch_compensation_backlog", {"status": "pending"}) == 3
    assert v("paywatch_compensation_backlog", {"status": "retrying"}) == 2
    assert v("paywatch_notification_backlog") == 5
    assert v("paywatch_pending_postings") == 11
    assert v("paywatch_recon_differences", {"kind": "amount_mismatch"}) == 4
    assert v("paywatch_trial_balance_ok") == 0
    assert v("paywatch_business_snapshot_ok") == 1
    n = len(calls)
    metrics_response(reg)
    metrics_response(reg)
    assert len(calls) == n  # within the ttl: no new queries
    clock.now += 5
    metrics_response(reg)
    assert len(calls) == n + 1


def test_a_failing_snapshot_drops_the_business_gauges_and_says_so(reg):
    state = {"fail": False}

    def snapshot() -> BusinessSnapshot:
        if state["fail"]:
            raise ConnectionError("db down")
        return BusinessSnapshot(processing_orders=2)

    m = CoreMetrics(reg, business=snapshot, business_ttl=0.0)
    assert reg.get_sample_value("paywatch_orders_processing") == 2
    state["fail"] = True
    body, _ = metrics_response(reg)  # the scrape itself does not fail
    assert b"paywatch_orders_processing" not in body  # not last hour's figure as today's
    assert b"paywatch_trial_balance_ok" not in body
    assert reg.get_sample_value("paywatch_business_snapshot_ok") == 0
    assert m.business is not None
    state["fail"] = False
    assert reg.get_sample_value("paywatch_orders_processing") == 2
    assert reg.get_sample_value("paywatch_business_snapshot_ok") == 1


def test_an_unchecked_trial_balance_is_no_gauge_not_a_balanced_one(reg):
    CoreMetrics(reg, business=lambda: BusinessSnapshot(trial_balance_ok=None))
    assert reg.get_sample_value("paywatch_trial_balance_ok") is None
    assert reg.get_sample_value("paywatch_business_snapshot_ok") == 1


def test_business_label_values_are_bounded_too(reg):
    CoreMetrics(reg, business=lambda: BusinessSnapshot(recon_differences={"order 123456789": 1}))
    assert reg.get_sample_value("paywatch_recon_differences", {"kind": "other"}) == 1
