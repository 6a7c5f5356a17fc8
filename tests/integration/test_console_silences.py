"""Silencing from the console (issue 18): operators only, creator, comment and end required,
audited, honoured by the silence store the dispatcher reads; a demoted user cannot; hostile
comments and creators inert. AppTest runs the real ``console/app.py`` over a migrated SQLite
database.
"""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from oncall_app import (
    HOSTILE,
    PASSWORD,
    _app,
    _markdown,
    oncall_db,  # noqa: F401 - fixture
    put_alert,
)


# -- silencing ----------------------------------------------------------------------------
def _silences(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "select matchers, creator, comment, starts_at, ends_at"
                " from alert_silences order by id"
            )
        ).all()


def _audit(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select actor, role, action, target, detail from console_audit order by id")
        ).all()


def test_viewer_sees_no_silence_action(oncall_db):
    put_alert(oncall_db, "breaker_open", {"resource": "channel.SANDBOX_A"})
    at = _app("vera", "viewer").run()
    assert not at.exception
    assert "Silence an alert" not in [e.label for e in at.expander]
    assert not [b for b in at.button if b.label in ("Silence", "End silence")]


def test_operator_silences_an_alert_with_comment_and_end(oncall_db):
    from alerts.silences import SilenceStore

    fp = put_alert(
        oncall_db,
        "breaker_open",
        {"resource": "channel.SANDBOX_A"},
        summary="breaker for channel.SANDBOX_A has kept calls away for a minute",
    )
    other = put_alert(oncall_db, "breaker_open", {"resource": "coupon"}, summary="coupon")
    at = _app("olive", "operator").run()
    assert not at.exception, at.exception
    at.selectbox(key="silence_alert").select(fp)
    at.button(key="silence_submit").click().run()  # no comment: refused, nothing written
    assert [e.value for e in at.error] == ["A silence needs a comment saying why\\."]
    assert _silences(oncall_db) == []
    at.selectbox(key="silence_alert").select(fp)
    at.selectbox(key="silence_for").select("2 hours")
    at.text_input(key="silence_comment").input("channel team is on it")
    t0 = time.time()
    at.button(key="silence_submit").click().run()
    assert not at.exception, at.exception
    [row] = _silences(oncall_db)
    labels = {"alertname": "breaker_open", "resource": "channel.SANDBOX_A", "severity": "page"}
    assert json.loads(row.matchers) == labels
    assert (row.creator, row.comment) == ("olive", "channel team is on it")
    assert t0 + 7200 - 5 < row.ends_at < time.time() + 7200 + 5
    assert at.success and at.success[0].value.startswith("Silenced")
    # the dispatcher's store now suppresses this alert's notifications, not the other's
    store = SilenceStore(oncall_db)
    assert store.matches(labels) is not None
    assert store.matches({**labels, "resource": "coupon"}) is None
    rows = {m for m in _markdown(at) if "-badge[" in m}
    assert any("silenced until" in r and "by olive" in r and "SANDBOX" in r for r in rows)
    assert not any("silenced" in r and "coupon" in r for r in rows)
    assert other
    [audit] = [a for a in _audit(oncall_db) if a.action == "alert.silence"]
    assert (audit.actor, audit.role, audit.target) == ("olive", "operator", "breaker_open")
    assert json.loads(audit.detail)["ok"] is True
    # and ended again from the same place
    at.button(key="silence_end_click").click().run()
    assert not at.exception, at.exception
    assert store.matches(labels) is None
    assert [a.action for a in _audit(oncall_db)][-1] == "alert.unsilence"


def test_a_demoted_user_cannot_silence(oncall_db):
    """The form was drawn for an operator; demoted before the click, nothing is written."""
    from console.auth import set_role

    fp = put_alert(oncall_db, "breaker_open", {"resource": "coupon"})
    at = _app("olive", "operator").run()
    at.selectbox(key="silence_alert").select(fp)
    at.text_input(key="silence_comment").input("quiet please")
    set_role(oncall_db, "olive", "viewer")
    at.button(key="silence_submit").click().run()
    assert not at.exception, at.exception
    assert _silences(oncall_db) == []
    assert "Silence an alert" not in [e.label for e in at.expander]


def test_hostile_silence_comment_and_creator_are_inert(oncall_db):
    from console.auth import create_user

    fp = put_alert(oncall_db, "breaker_open", {"resource": "coupon"}, summary=HOSTILE[0])
    create_user(oncall_db, "x_bold_x", PASSWORD, "operator")
    at = _app("x_bold_x", "operator").run()
    at.selectbox(key="silence_alert").select(fp)
    at.text_input(key="silence_comment").input(HOSTILE[2])
    at.button(key="silence_submit").click().run()
    assert not at.exception, at.exception
    shown = "\n".join(
        [*_markdown(at), *(e.value for e in at.success), *(c.value for c in at.caption)]
    )
    assert "by x\\_bold\\_x" in shown and "Creator: x\\_bold\\_x" in shown
    assert HOSTILE[0] not in shown and "\\!\\[px\\]" in shown
