"""Console DB reads on a real migrated database: users, audit log, alerts, backlogs."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from console.audit import recent, record
from console.auth import AuthError, User, create_user, ensure_bootstrap_admin, list_users, verify
from console.views.overview import active_alerts, backlogs


@pytest.fixture
def engine(sqlite_url):
    eng = sa.create_engine(sqlite_url)
    yield eng
    eng.dispose()


def test_create_and_verify_users(engine):
    assert create_user(engine, "otto", "long enough", "operator") == User("otto", "operator")
    assert verify(engine, "otto", "long enough") == User("otto", "operator")
    assert verify(engine, "otto", "wrong password") is None
    assert verify(engine, "nobody", "long enough") is None
    with pytest.raises(AuthError):
        create_user(engine, "otto", "long enough", "operator")
    with pytest.raises(AuthError):
        create_user(engine, "x", "long enough", "root")
    with pytest.raises(AuthError):
        create_user(engine, "x", "short", "viewer")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("select password_hash from console_users")).scalar_one()
    assert "long enough" not in stored
    assert [u["username"] for u in list_users(engine)] == ["otto"]


def test_bootstrap_admin_only_when_no_users(engine):
    assert not ensure_bootstrap_admin(engine, {})
    env = {"PAYWATCH_CONSOLE_ADMIN": "root", "PAYWATCH_CONSOLE_ADMIN_PASSWORD": "bootstrap-pw"}
    assert ensure_bootstrap_admin(engine, env)
    assert verify(engine, "root", "bootstrap-pw") == User("root", "admin")
    assert not ensure_bootstrap_admin(engine, env)


def test_audit_record_and_recent(engine):
    record(
        engine,
        actor="otto",
        role="operator",
        action="switch.propose",
        target="coupon",
        detail={"reason": "slow", "ok": True},
    )
    record(engine, actor="ada", role="admin", action="login", target="console")
    rows = recent(engine)
    assert [r["action"] for r in rows] == ["login", "switch.propose"]
    assert rows[1]["detail"] == {"ok": True, "reason": "slow"}
    assert rows[1]["at"].tzinfo is not None
    assert [r["actor"] for r in recent(engine, actor="otto")] == ["otto"]


def test_active_alerts_and_backlogs(engine):
    with engine.begin() as conn:
        for fp, state in (("a", "firing"), ("b", "pending"), ("c", "resolved")):
            conn.execute(
                sa.text(
                    "insert into alert_states (fingerprint, rule, labels, annotations, severity,"
                    " state, value, last_eval) values (:fp, :rule, :labels, '{}', 'page', :st, 1, 1)"
                ),
                {"fp": fp, "rule": f"R{fp}", "labels": json.dumps({"step": "pay"}), "st": state},
            )
    alerts = active_alerts(engine)
    assert [(a["rule"], a["state"]) for a in alerts] == [("Ra", "firing"), ("Rb", "pending")]
    assert alerts[0]["labels"] == {"step": "pay"}
    b = backlogs(engine)
    assert b == {
        "compensation": {"pending": 0, "running": 0, "failed": 0, "manual": 0},
        "notifications_pending": 0,
        "pending_postings": 0,
    }


def test_backlogs_count_compensation_by_status(migrated_db):
    from paycore import IdGenerator
    from paycore.jobs.tasks import TaskQueue

    q = TaskQueue(migrated_db, IdGenerator())
    q.enqueue(None, "refund_query", "k1", {}, "m1")
    q.enqueue(None, "refund_query", "k2", {}, "m1")
    b = backlogs(migrated_db.engine)
    assert b["compensation"]["pending"] == 2
