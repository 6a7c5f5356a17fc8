"""Acknowledgements withdrawn and ended (issue 22, point 7): a withdrawn acknowledgement
covers nothing and the alert is repeated again; an acknowledgement ends with its firing
episode whatever the acker's clock said; rows from before migration 0018 keep working;
of two withdrawals at once one wins. SQLite and PostgreSQL (``migrated_db`` /
``empty_db_url``)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import sqlalchemy as sa
from alert_series import T0, FakeQuery, RecordingNotifier

from alerts import AlertEngine, QuerySpec, ThresholdRule
from alerts.acks import AckStore
from alerts.errors import AckError
from alerts.history import ACK_WITHDRAWN, ACKED, ack_events, notification_log


@pytest.fixture
def db(migrated_db):
    return migrated_db.engine


def _engine(db, q: FakeQuery, notifier: RecordingNotifier) -> AlertEngine:
    rule = ThresholdRule(
        "breaker_open", QuerySpec("latest", "breaker", by=("resource",)), ">=", 1, for_s=0
    )
    return AlertEngine(
        db,
        q,
        [rule],
        notifier=notifier,
        group_by=("rule", "resource"),
        group_wait=0,
        group_interval=60,
        repeat_interval=600,
    )


def _pages(notifier: RecordingNotifier, resource: str) -> list[tuple[float, str]]:
    return [(n.at - T0, n.status) for n in notifier.sent if n.group_labels["resource"] == resource]


def test_a_withdrawn_ack_covers_nothing_and_the_alert_pages_again(db) -> None:
    q = FakeQuery()
    q.gauge("breaker", {"resource": "database"}, lambda t: 1.0)
    notifier = RecordingNotifier()
    eng = _engine(db, q, notifier)
    eng.evaluate(now=T0)
    (alert,) = eng.active()
    fp = alert.fingerprint
    acks = AckStore(db)
    first = acks.ack(fp[:10], "olive", "on it", now=T0 + 30)
    second = acks.ack(fp, "omar", "me too", now=T0 + 40)
    for t in range(60, 960, 60):
        eng.evaluate(now=T0 + t)
    assert _pages(notifier, "database") == [(0, "firing")]  # acked: no repeat at 600

    for who, why, msg in (("", "x", "creator"), ("sam", " ", "comment"), ("s" * 65, "x", "64")):
        with pytest.raises(AckError, match=msg):
            acks.withdraw(fp, who, why, now=T0 + 950)
    with pytest.raises(AckError, match="no alert"):
        acks.withdraw("0" * 16, "sam", "wrong alert")
    gone = acks.withdraw(fp[:10], " sam ", " wrong alert ", now=T0 + 960)
    # both acknowledgements in force are withdrawn: one left behind would still hold pages
    assert [(a.id, a.withdrawn_by, a.withdraw_comment) for a in gone] == [
        (first.id, "sam", "wrong alert"),
        (second.id, "sam", "wrong alert"),
    ]
    assert acks.covering(eng.active()) == {}
    stored = {a.id: a for a in acks.recent(fingerprint=fp)}
    assert stored[first.id].withdrawn_at == T0 + 960 and stored[first.id].status(alert) == (
        "withdrawn"
    )
    with pytest.raises(AckError, match="no acknowledgement of breaker_open is in force"):
        acks.withdraw(fp, "sam", "again")

    # the repeat is overdue (last page at 0, repeat 600): the next dispatch pages
    eng.evaluate(now=T0 + 1020)
    assert _pages(notifier, "database") == [(0, "firing"), (1020, "firing")]
    statuses = [r.status for r in notification_log(db, fingerprint=fp)]
    assert statuses[0] == "sent" and "acked" in statuses

    events = [(e.kind, e.by, e.comment, e.ack_id) for e in ack_events(db, fingerprint=fp)]
    assert events == [
        (ACK_WITHDRAWN, "sam", "wrong alert", second.id),
        (ACK_WITHDRAWN, "sam", "wrong alert", first.id),
        (ACKED, "omar", "me too", second.id),
        (ACKED, "olive", "on it", first.id),
    ]
    assert ack_events(db, fingerprint=fp)[0].labels["resource"] == "database"
    assert len(ack_events(db, limit=3)) == 3
    # a new acknowledgement after a withdrawal holds the pages again
    again = acks.ack(fp, "sam", "handed over to me", now=T0 + 1030)
    assert acks.covering(eng.active()) == {fp: again}


def test_an_ack_ends_with_its_episode_whatever_the_ackers_clock(db) -> None:
    """The acker's clock 5 min behind the worker's still covers the episode; 2 h ahead
    it does not cover the next one (it used to: ``at >= fired_at``)."""
    q = FakeQuery()
    q.gauge("breaker", {"resource": "redis"}, lambda t: 0.0 if T0 + 900 <= t < T0 + 1500 else 1.0)
    notifier = RecordingNotifier()
    eng = _engine(db, q, notifier)
    eng.evaluate(now=T0)
    (alert,) = eng.active()
    acks = AckStore(db)
    slow = acks.ack(alert.fingerprint, "olive", "clock behind", now=T0 - 300)
    fast = acks.ack(alert.fingerprint, "omar", "clock ahead", now=T0 + 7200)
    assert (slow.fired_at, fast.fired_at) == (T0, T0)
    assert acks.covering([alert]) == {alert.fingerprint: fast}
    assert slow.status(alert) == "in force"
    for t in range(60, 960, 60):
        eng.evaluate(now=T0 + t)
    # no repeat at 600 (acked); it resolves at 900 and the resolved notice goes out
    assert _pages(notifier, "redis") == [(0, "firing"), (900, "resolved")]
    with pytest.raises(AckError, match=r"not firing"):
        acks.ack(alert.fingerprint, "olive", "late")
    with pytest.raises(AckError, match=r"in force \(it is resolved\)"):
        acks.withdraw(alert.fingerprint, "olive", "late")
    (resolved,) = eng.alerts(("resolved",))
    assert {a.status(resolved) for a in acks.recent()} == {"ended"}

    for t in range(1500, 2160, 60):
        eng.evaluate(now=T0 + t)
    (refired,) = eng.active()
    assert refired.fired_at == T0 + 1500
    assert acks.covering([refired]) == {}  # 7200 >= 1500, but another episode
    assert {a.status(refired) for a in acks.recent()} == {"ended"}
    assert _pages(notifier, "redis")[2:] == [(1500, "firing"), (2100, "firing")]


def test_acks_from_before_migration_0018_still_cover_their_episode(empty_db_url) -> None:
    """A row of 0017 (no ``fired_at``) covers while ``at >= fired_at``, and is withdrawn."""
    from alembic import command

    from alerts.history import alerts
    from paycore import Database
    from runtime.migrate import alembic_config, upgrade_database

    fp = "f" * 16
    db = Database(empty_db_url)
    try:
        with db.engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0017")
            conn.execute(
                sa.text(
                    "insert into alert_states (fingerprint, rule, labels, annotations, severity,"
                    " state, value, active_since, fired_at, resolved_at, last_eval) values"
                    " (:fp, 'breaker_open', '{}', '{}', 'page', 'firing', 1, :t, :t, null, :t)"
                ),
                {"fp": fp, "t": T0},
            )
            conn.execute(
                sa.text(
                    "insert into alert_acks (fingerprint, rule, creator, comment, at)"
                    " values (:fp, 'breaker_open', 'olive', 'old', :at)"
                ),
                {"fp": fp, "at": T0 + 30},
            )
        upgrade_database(db.engine)
        store = AckStore(db.engine)
        (old,) = store.recent()
        assert (old.creator, old.fired_at, old.withdrawn_at, old.withdrawn_by) == (
            "olive",
            None,
            None,
            "",
        )
        (alert,) = alerts(db.engine)
        assert store.covering([alert]) == {fp: old}
        assert not old.covers(replace(alert, fired_at=T0 + 60))  # a later episode
        (gone,) = store.withdraw(fp, "sam", "handing over", now=T0 + 90)
        assert gone.id == old.id and store.covering([alert]) == {}
    finally:
        db.dispose()


def test_of_two_withdrawals_at_once_one_wins(pg_url) -> None:
    """The second withdrawal read the acknowledgement as in force, but the first commits
    before its update: it is refused, and the first one's who and why stay. PostgreSQL
    only: on SQLite every transaction begins IMMEDIATE, so two cannot interleave."""
    db = sa.create_engine(pg_url)
    fired: list[str] = []

    def first_meanwhile(conn, cursor, statement, *_args) -> None:  # noqa: ANN001
        if statement.lstrip().upper().startswith("UPDATE ALERT_ACKS") and not fired:
            fired.append("ann")
            AckStore(db).withdraw(alert.fingerprint, "ann", "mine now", now=T0 + 60)

    try:
        q = FakeQuery()
        q.gauge("breaker", {"resource": "database"}, lambda t: 1.0)
        eng = _engine(db, q, RecordingNotifier())
        eng.evaluate(now=T0)
        (alert,) = eng.active()
        acks = AckStore(db)
        acks.ack(alert.fingerprint, "olive", "on it", now=T0 + 30)
        sa.event.listen(db, "before_cursor_execute", first_meanwhile)
        with pytest.raises(AckError, match="withdrawn meanwhile"):
            acks.withdraw(alert.fingerprint, "sam", "wrong alert", now=T0 + 61)
        (ack,) = acks.recent()
        assert (ack.withdrawn_by, ack.withdraw_comment, ack.withdrawn_at) == (
            "ann",
            "mine now",
            T0 + 60,
        )
    finally:
        db.dispose()
