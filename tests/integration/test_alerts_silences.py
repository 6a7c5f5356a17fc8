"""Silences: validation, matching, and suppression of notifications (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from alert_series import T0, FakeQuery, RecordingNotifier

from alerts import AlertEngine, QuerySpec, SilenceError, SilenceStore, ThresholdRule


@pytest.fixture
def db(migrated_db):
    return migrated_db.engine


@pytest.fixture
def store(db) -> SilenceStore:
    return SilenceStore(db, clock=lambda: T0)


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"creator": ""}, "creator"),
    ({"creator": "   "}, "creator"),
    ({"comment": ""}, "comment"),
    ({"ends_at": None}, "end time"),
    ({"ends_at": T0 - 1}, "end"),
    ({"ends_at": T0}, "end"),
    ({"starts_at": T0 + 7200}, "end after it starts"),
    ({"ends_at": math.nan}, "finite"),
    ({"matchers": {}}, "matcher"),
    ({"matchers": {"bad-label": "x"}}, "matcher label"),
    ({"matchers": {"resource": ""}}, "non-empty"),
    ({"creator": "x" * 65}, "64"),
]


def test_creator_comment_and_end_are_required(store) -> None:
    for kwargs, message in INVALID:
        args: dict[str, Any] = {
            "matchers": {"resource": "redis"},
            "creator": "oncall@pay",
            "comment": "failover",
            "ends_at": T0 + 3600,
            **kwargs,
        }
        with pytest.raises(SilenceError, match=message):
            store.create(**args)
    assert store.all() == []  # nothing written


def test_create_match_expire(store) -> None:
    s = store.create({"resource": "redis"}, "oncall@pay", "redis failover drill", T0 + 3600)
    assert (s.creator, s.comment, s.starts_at, s.ends_at) == (
        "oncall@pay",
        "redis failover drill",
        T0,
        T0 + 3600,
    )
    assert store.matches({"resource": "redis", "alertname": "breaker_open"}, now=T0 + 1) == s
    assert store.matches({"resource": "db"}, now=T0 + 1) is None
    assert store.matches({"resource": "redis"}, now=T0 + 3600) is None  # end is exclusive
    later = store.create({"resource": "db"}, "a", "maintenance", T0 + 7200, starts_at=T0 + 3600)
    assert store.matches({"resource": "db"}, now=T0 + 10) is None  # not started yet
    assert [x.id for x in store.active(now=T0 + 4000)] == [later.id]
    expired = store.expire(s.id, now=T0 + 60)
    assert expired.ends_at == T0 + 60
    assert store.matches({"resource": "redis"}, now=T0 + 61) is None
    with pytest.raises(SilenceError):
        store.expire(99999, now=T0)


def breakers(q: FakeQuery, *resources: str) -> ThresholdRule:
    for res in resources:
        q.gauge("paywatch_breaker_state", {"resource": res}, lambda t: 2.0)
    return ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
    )


def test_a_matching_silence_suppresses_the_notification_and_is_recorded(db, store) -> None:
    q = FakeQuery()
    rule = breakers(q, "redis")
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, silences=store, group_wait=0)
    silence = store.create({"resource": "redis"}, "oncall@pay", "known: failover", T0 + 600)
    for t in range(0, 600, 60):
        eng.evaluate(now=T0 + t)
    assert notifier.sent == []
    (alert,) = eng.active()
    assert alert.state == "firing"  # still evaluated and visible, only not notified
    records = eng.notifications()
    assert [(r.status, r.receiver, r.attempts) for r in records] == [("silenced", "silence", 0)]
    assert records[0].fingerprints == (alert.fingerprint,)
    assert json.loads(records[0].payload)[alert.fingerprint]["silence_id"] == silence.id
    # the silence ends: the still-firing alert is notified at the next evaluation
    eng.evaluate(now=T0 + 600)
    assert [n.at for n in notifier.sent] == [T0 + 600]
    assert eng.notifications()[0].status == "sent"


def test_a_non_matching_silence_does_not_suppress(db, store) -> None:
    q = FakeQuery()
    rule = breakers(q, "redis", "db")
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, silences=store, group_wait=0)
    store.create({"resource": "redis"}, "oncall@pay", "known: failover", T0 + 3600)
    store.create({"resource": "db", "env": "staging"}, "oncall@pay", "other env", T0 + 3600)
    eng.evaluate(now=T0)
    (note,) = notifier.sent
    assert [a.labels["resource"] for a in note.alerts] == ["db"]
    assert sorted(r.status for r in eng.notifications()) == ["sent", "silenced"]


def test_silence_created_after_the_page_still_lets_the_resolve_through(db, store) -> None:
    """The receiver opened an incident on the firing notice: it gets the resolved one."""
    q = FakeQuery()
    q.gauge("paywatch_breaker_state", {"resource": "redis"}, lambda t: 2.0 if t < T0 + 300 else 0.0)
    rule = ThresholdRule(
        "breaker_open", QuerySpec("latest", "paywatch_breaker_state", by=("resource",)), ">=", 2
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(
        db, q, [rule], notifier=notifier, silences=store, group_wait=0, group_interval=60
    )
    eng.evaluate(now=T0)
    store.create(
        {"alertname": "breaker_open"}, "oncall@pay", "ack, working on it", T0 + 3600, now=T0 + 30
    )
    eng.evaluate(now=T0 + 300)
    assert [n.status for n in notifier.sent] == ["firing", "resolved"]
