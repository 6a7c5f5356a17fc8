"""The alert engine's threshold rules on SQLite and PostgreSQL, driven by synthetic series and
an injected clock: lifecycle, missing data, dedup, grouping, errors, state that survives a
new engine, the default breaker rule (series in ``alert_series``).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alert_series import (
    T0,
    FakeQuery,
    Fn,
    RecordingNotifier,
    db,  # noqa: F401 - fixture
    run,
    transitions,
)
from conftest import Clock

from alerts import AlertEngine, QuerySpec, RuleError, ThresholdRule
from alerts.schema import AlertHistory, AlertNotification, AlertState
from collectors.query import Series

# -- thresholds: lifecycle, missing data, dedup, errors --------------------------------------


def backlog_rule(**kw) -> ThresholdRule:
    kw.setdefault("for_s", 600)
    return ThresholdRule(
        "notification_backlog_high",
        QuerySpec("latest", "paywatch_notification_backlog"),
        ">",
        1000,
        **kw,
    )


def test_threshold_pending_then_firing_after_for_then_resolved(db) -> None:
    q = FakeQuery()
    # backlog 5000 from T0 to T0 + 1500, and a 2-minute blip at T0 + 3000
    high = lambda t: T0 <= t < T0 + 1500 or T0 + 3000 <= t < T0 + 3120  # noqa: E731
    q.gauge("paywatch_notification_backlog", {}, lambda t: 5000.0 if high(t) else 10.0)
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [backlog_rule()], notifier=notifier, group_wait=0)
    run(eng, T0 - 120, T0 + 3600, 60)
    assert transitions(eng, "notification_backlog_high") == [
        ("inactive", "pending", 0.0),
        ("pending", "firing", 600.0),
        ("firing", "resolved", 1500.0),
        ("resolved", "pending", 3000.0),
        ("pending", "inactive", 3120.0),  # cleared before for_s: back to inactive
    ]
    assert [(n.status, n.at - T0) for n in notifier.sent] == [
        ("firing", 600.0),
        ("resolved", 1500.0),
    ]
    assert eng.active() == []


def test_threshold_missing_data_alert(db) -> None:
    q = FakeQuery()
    q.gauge("paywatch_notification_backlog", {}, lambda t: 3.0, until=T0)
    eng = AlertEngine(db, q, [backlog_rule(absent_for_s=600)])
    run(eng, T0, T0 + 900, 60)
    assert transitions(eng, "notification_backlog_high_absent") == [("inactive", "firing", 660.0)]


def test_callable_query_and_missing_data_as_for(db) -> None:
    data: list[Series] = [Series({"resource": "redis"}, 3.0)]
    rule = ThresholdRule(
        "breaker_open",
        lambda query, at: list(data),
        ">=",
        2,
        absent_for_s=120,
        promql="max by (resource) (x) >= 2",
    )
    eng = AlertEngine(db, FakeQuery(), [rule])
    eng.evaluate(now=T0)
    assert [a.rule for a in eng.active()] == ["breaker_open"]
    data.clear()
    eng.evaluate(now=T0 + 60)
    assert [(a.rule, a.state) for a in eng.active()] == [("breaker_open_absent", "pending")]
    eng.evaluate(now=T0 + 180)
    assert [(a.rule, a.state) for a in eng.active()] == [("breaker_open_absent", "firing")]


def test_fingerprint_dedup_across_evaluations(db) -> None:
    q = FakeQuery()
    q.gauge("paywatch_breaker_state", {"resource": "redis"}, lambda t: 2.0)
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, group_wait=0, repeat_interval=3600)
    run(eng, T0, T0 + 3000, 60)
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AlertState)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(AlertHistory)).scalar() == 1
    assert len(notifier.sent) == 1
    (alert,) = eng.active()
    assert alert.fired_at == T0 and alert.last_eval == T0 + 3000
    run(eng, T0 + 3600, T0 + 3600, 60)  # repeat_interval elapsed: notified again
    assert len(notifier.sent) == 2
    assert notifier.sent[0].alerts[0].fingerprint == notifier.sent[1].alerts[0].fingerprint


def opens_at(since: float) -> Fn:
    return lambda t: 2.0 if t >= since else 0.0


def test_grouping_group_wait_and_group_interval(db) -> None:
    q = FakeQuery()
    opened = {"redis": T0, "db": T0 + 10, "channel": T0 + 100}
    for res, since in opened.items():
        q.gauge("paywatch_breaker_state", {"resource": res}, opens_at(since))
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, group_wait=30, group_interval=300)
    run(eng, T0, T0 + 420, 10)
    sent = [(n.at - T0, sorted(a.labels["resource"] for a in n.alerts)) for n in notifier.sent]
    # one group (rule, severity): waits 30 s, then carries both; the third joins 300 s later
    assert sent == [(30.0, ["db", "redis"]), (330.0, ["channel", "db", "redis"])]
    assert notifier.sent[0].group_labels == {"rule": "breaker_open", "severity": "page"}


def test_group_by_resource_splits_notifications(db) -> None:
    q = FakeQuery()
    for res in ("redis", "db"):
        q.gauge("paywatch_breaker_state", {"resource": res}, lambda t: 3.0)
    rule = ThresholdRule(
        "breaker_open", QuerySpec("latest", "paywatch_breaker_state", by=("resource",)), ">=", 2
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, group_by=("rule", "resource"), group_wait=0)
    eng.evaluate(now=T0)
    assert sorted(len(n.alerts) for n in notifier.sent) == [1, 1]
    assert len({n.group_key for n in notifier.sent}) == 2


def test_a_failing_query_keeps_alerts_as_they_are(db) -> None:
    q = FakeQuery()
    q.gauge("paywatch_notification_backlog", {}, lambda t: 5000.0)
    eng = AlertEngine(db, q, [backlog_rule(for_s=0)])
    eng.evaluate(now=T0)
    q.fail = True
    result = eng.evaluate(now=T0 + 60)
    assert "notification_backlog_high" in result.errors
    assert [a.state for a in eng.active()] == ["firing"]  # not resolved by an outage


def test_duplicate_alert_names_are_refused(db) -> None:
    with pytest.raises(RuleError):
        AlertEngine(db, FakeQuery(), [backlog_rule(), backlog_rule()])


def test_state_and_history_survive_a_new_engine(db) -> None:
    """State lives in the database: a restarted engine continues the lifecycle."""
    q = FakeQuery()
    q.gauge("paywatch_notification_backlog", {}, lambda t: 5000.0 if t < T0 + 900 else 0.0)
    AlertEngine(db, q, [backlog_rule()]).evaluate(now=T0)
    again = AlertEngine(db, q, [backlog_rule()], clock=Clock(T0 + 600))
    again.evaluate()  # injected clock
    assert [(a.state, a.active_since, a.fired_at) for a in again.active()] == [
        ("firing", T0, T0 + 600)
    ]
    again.evaluate(now=T0 + 900)
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(AlertHistory.from_state, AlertHistory.to_state, AlertHistory.at).order_by(
                AlertHistory.id
            )
        ).all()
        assert [tuple(r) for r in rows] == [
            ("inactive", "pending", T0),
            ("pending", "firing", T0 + 600),
            ("firing", "resolved", T0 + 900),
        ]
        notes = conn.execute(sa.select(sa.func.count()).select_from(AlertNotification)).scalar()
        assert notes == 0  # no notifier configured


def test_default_breaker_rule_pages_a_flapping_breaker_but_not_forced_closed(db) -> None:
    """A dead dependency's breaker cycles open -> half_open -> open every cool-down. The
    shipped rule must page after its minute; the state gauge alone (>= 2) never holds."""
    from prometheus_client import CollectorRegistry

    from alerts import default_rules
    from collectors import CoreMetrics, Sampler, TimeSeriesStore

    now = [T0]
    store = TimeSeriesStore(db, clock=lambda: now[0])
    metrics = CoreMetrics(CollectorRegistry())
    sampler = Sampler(metrics.registry, store, interval=5.0)
    rule = next(r for r in default_rules(["SANDBOX_A"]) if r.name == "breaker_open")
    eng = AlertEngine(db, store, [rule])
    metrics.set_breaker_state("channel.SANDBOX_A", "closed")
    metrics.set_breaker_state("channel.SANDBOX_B", "closed")
    metrics.breaker_changed("channel.SANDBOX_B", "closed", "forced_closed", "switch")
    for i in range(0, 24):  # 2 minutes: open for 5 s, probing for 5 s, again
        now[0] = T0 + 5 * i
        state = "open" if i % 2 == 0 else "half_open"
        metrics.breaker_changed("channel.SANDBOX_A", "x", state, "cool-down")
        sampler.sample_once(now[0])
        eng.evaluate(now=now[0])
    firing = [(a.rule, a.labels.get("resource"), a.state) for a in eng.active()]
    assert firing == [("breaker_open", "channel.SANDBOX_A", "firing")]
    old_style = store.latest("paywatch_breaker_state", at=now[0], by=("resource",), agg="max")
    # what a "state >= 2" rule sees on every other evaluation: half_open, the hold restarts
    assert {s.labels["resource"]: s.value for s in old_style}["channel.SANDBOX_A"] == 1.0
