"""The engine keeps Alertmanager told: re-sends, short endsAt, resolved at once
(a local HTTP receiver standing in for Alertmanager; SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

import pytest
import sqlalchemy as sa
from alert_series import T0, FakeQuery
from conftest import LiveServer
from test_alerts_notify import Receiver

from alerts import AlertEngine, AlertmanagerNotifier, MultiNotifier, QuerySpec, ThresholdRule
from alerts.schema import AlertNotification


@pytest.fixture
def db(migrated_db):
    return migrated_db.engine


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def engine(db, notifier, open_until: float) -> AlertEngine:
    """``breaker_open`` fires from T0 while the breaker gauge is 2, i.e. until
    ``open_until``; the annotation carries the current value."""
    q = FakeQuery()
    q.gauge(
        "paywatch_breaker_state",
        {"resource": "redis"},
        lambda t: 2.0 + (t - T0) / 1000 if t <= open_until else 0.0,
    )
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
        annotations={"summary": "state {{ $value }}", "runbook": "docs/runbook.md#breaker_open"},
    )
    # paywatch's own grouping timers must not delay Alertmanager
    return AlertEngine(
        db, q, [rule], notifier=notifier, group_wait=600, group_interval=600, clock=lambda: T0
    )


def recorded(db) -> list[tuple]:
    with db.connect() as conn:
        q = sa.select(AlertNotification.receiver, AlertNotification.status, AlertNotification.at)
        return [tuple(r) for r in conn.execute(q.order_by(AlertNotification.id))]


def test_firing_resent_every_interval_resolved_at_once_then_retained(db) -> None:
    rx = Receiver()
    with LiveServer(rx.app()) as srv:
        am = AlertmanagerNotifier(srv.url, resend_interval=60, env="test", sleep=lambda s: None)
        eng = engine(db, MultiNotifier([am]), open_until=T0 + 150)
        for t in (0, 25, 50, 75, 100, 125, 150):
            eng.evaluate(now=T0 + t)
        assert [len(b) for b in rx.bodies] == [1, 1, 1]  # at T0, T0 + 75, T0 + 150
        sent = [b[0] for b in rx.bodies]
        assert [ts(a["endsAt"]) for a in sent] == [T0 + 240, T0 + 75 + 240, T0 + 150 + 240]
        # the annotation is the current value, not the first one
        assert [a["annotations"]["summary"] for a in sent] == [
            "state 2",
            "state 2.075",
            "state 2.15",
        ]
        assert {a["labels"]["env"] for a in sent} == {"test"}
        eng.evaluate(now=T0 + 160)  # the breaker closed at T0 + 150: sent at once
        resolved = rx.bodies[-1][0]
        assert len(rx.bodies) == 4 and ts(resolved["endsAt"]) == T0 + 160
        assert ts(resolved["startsAt"]) == T0
        for t in range(185, 1100, 25):  # kept in each re-send for 15 minutes, then dropped
            eng.evaluate(now=T0 + t)
        assert all(ts(b[0]["endsAt"]) == T0 + 160 for b in rx.bodies[4:])
        assert 13 <= len(rx.bodies) <= 16
        am.close()
    # changes are recorded (notification log); routine re-sends are not
    assert recorded(db) == [("alertmanager", "sent", T0), ("alertmanager", "sent", T0 + 160)]


def test_a_failed_send_is_retried_next_evaluation_and_recorded(db) -> None:
    rx = Receiver(fail_first=3, status=503)
    with LiveServer(rx.app()) as srv:
        am = AlertmanagerNotifier(srv.url, retries=2, sleep=lambda s: None)
        eng = engine(db, am, open_until=T0 + 10_000)
        eng.evaluate(now=T0)  # 3 attempts, all 503
        eng.evaluate(now=T0 + 25)  # not waiting for the interval: the last push failed
        am.close()
    assert rx.calls == 4 and len(rx.bodies) == 1
    assert recorded(db) == [("alertmanager", "failed", T0), ("alertmanager", "sent", T0 + 25)]


def test_silenced_alerts_are_left_out(db) -> None:
    rx = Receiver()
    with LiveServer(rx.app()) as srv:
        am = AlertmanagerNotifier(srv.url, sleep=lambda s: None)
        eng = engine(db, am, open_until=T0 + 10_000)
        eng.silences.create({"resource": "redis"}, "ann", "known", T0 + 3600)
        eng.evaluate(now=T0)
        eng.evaluate(now=T0 + 100)
        am.close()
    assert rx.calls == 0
