"""On-call → Alerts and Overview (issue 22, point 7): an acknowledgement withdrawn from the
console (operators only, a comment saying why required, audited with who and why; the
alert pages again; the withdrawal in the acknowledgements table and the alert history),
and silences with ``!=``, ``=~``, ``!~`` matchers shown with their operators, the same
way on both pages. AppTest runs the real ``console/app.py`` over a migrated SQLite
database."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from alert_series import FakeQuery, RecordingNotifier
from oncall_app import (
    _app,
    _markdown,
    oncall_db,  # noqa: F401 - fixture
    put_alert,
)

from alerts import AlertEngine, QuerySpec, ThresholdRule
from alerts.acks import AckStore
from alerts.history import alerts as stored_alerts

PAGE = "pages/oncall_alerts.py"


def _page(user: str, role: str):
    at = _app(user, role).run()
    at.switch_page(PAGE)
    return at.run()


def _audit(engine, action: str) -> list:
    with engine.connect() as conn:
        q = "select actor, role, action, target, detail from console_audit order by id"
        return [r for r in conn.execute(sa.text(q)) if r.action == action]


def _frame(at, *columns: str):
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def _engine(db, notifier) -> AlertEngine:
    q = FakeQuery()
    q.gauge("breaker", {"resource": "coupon"}, lambda t: 1.0)
    rule = ThresholdRule(
        "breaker_open", QuerySpec("latest", "breaker", by=("resource",)), ">=", 1, severity="page"
    )
    return AlertEngine(
        db,
        q,
        [rule],
        notifier=notifier,
        group_by=("rule", "resource"),
        group_wait=0,
        group_interval=0,
        repeat_interval=60,
    )


def test_operator_withdraws_an_ack_audited_with_who_and_why(oncall_db):
    notifier = RecordingNotifier()
    eng = _engine(oncall_db, notifier)
    eng.evaluate(now=time.time() - 120)
    (coupon,) = [a.fingerprint for a in eng.active()]
    at = _page("olive", "operator")
    assert "Withdraw acknowledgement" not in [b.label for b in at.button]  # nothing acked
    at.selectbox(key="al_ack_alert").select(coupon)
    at.text_input(key="al_ack_comment").input("coupon team is on it")
    at.button(key="al_ack_submit").click().run()
    eng.evaluate(now=time.time())
    assert len(notifier.sent) == 1  # acked: the overdue repeat is held

    at.selectbox(key="al_unack_alert").select(coupon)
    at.button(key="al_unack_submit").click().run()  # no why: refused
    assert not at.exception, at.exception
    assert any("needs a comment" in e.value for e in at.error)
    assert AckStore(oncall_db).covering(stored_alerts(oncall_db))
    at.selectbox(key="al_unack_alert").select(coupon)
    at.text_input(key="al_unack_comment").input("wrong alert, handing over")
    at.button(key="al_unack_submit").click().run()
    assert not at.exception, at.exception
    assert at.success and "withdrawn" in at.success[0].value
    assert AckStore(oncall_db).covering(stored_alerts(oncall_db)) == {}
    assert not any("acked by" in m for m in _markdown(at))

    [refused, done] = _audit(oncall_db, "alert.unack")
    assert (done.actor, done.role, done.target) == ("olive", "operator", "breaker_open")
    detail = json.loads(done.detail)
    (ack,) = AckStore(oncall_db).recent()
    assert detail == {
        "fingerprint": coupon,
        "comment": "wrong alert, handing over",
        "ack_ids": [ack.id],
        "ok": True,
    }
    assert json.loads(refused.detail)["ok"] is False and refused.actor == "olive"

    at.run()
    acks = _frame(at, "withdrawn", "status")
    assert acks["status"].tolist() == ["withdrawn"]
    assert acks["withdrawn"].iloc[0].endswith("by olive: wrong alert, handing over")
    changes = _frame(at, "change")["change"].tolist()
    assert changes[:2] == [
        "ack withdrawn by olive: wrong alert, handing over",
        "acked by olive: coupon team is on it",
    ]
    assert changes[-1] == "inactive → firing"
    eng.evaluate(now=time.time() + 1)
    assert [n.status for n in notifier.sent] == ["firing", "firing"]  # it pages again


def test_a_viewer_cannot_ack_or_unack(oncall_db):
    """A viewer sees no form; an operator demoted before the click changes nothing."""
    from console.auth import set_role

    fp = put_alert(oncall_db, "breaker_open", {"resource": "coupon"})
    other = put_alert(oncall_db, "breaker_open", {"resource": "redis"})
    AckStore(oncall_db).ack(fp, "olive", "on it")
    at = _page("vera", "viewer")
    assert not at.exception, at.exception
    labels = [b.label for b in at.button]
    assert "Acknowledge" not in labels and "Withdraw acknowledgement" not in labels

    for button, fill in (
        ("al_unack_submit", {"al_unack_alert": fp, "al_unack_comment": "not mine"}),
        ("al_ack_submit", {"al_ack_alert": other, "al_ack_comment": "mine"}),
    ):
        set_role(oncall_db, "olive", "operator")
        at = _page("olive", "operator")
        for key, value in fill.items():
            if key.endswith("_alert"):
                at.selectbox(key=key).select(value)
            else:
                at.text_input(key=key).input(value)
        set_role(oncall_db, "olive", "viewer")
        at.button(key=button).click().run()
        assert not at.exception, at.exception
        assert any("may not" in e.value for e in at.error)
    (still,) = AckStore(oncall_db).recent()
    assert still.withdrawn_at is None and still.fingerprint == fp  # nothing changed
    assert _audit(oncall_db, "alert.unack") == [] and _audit(oncall_db, "alert.ack") == []


def test_silence_matchers_show_their_operators_on_overview_and_alerts(oncall_db):
    from alerts.silences import SilenceStore, parse_silence_matchers

    store = SilenceStore(oncall_db)
    ends = time.time() + 3600
    eq, extra = parse_silence_matchers(["alertname=breaker_open", "resource=~red.*|db"])
    mixed = store.create(eq, "olive", "redis and db", ends, extra=extra)
    eq, extra = parse_silence_matchers(["env!=test", "resource!~coupon|risk", "step=~p.+"])
    only_ops = store.create(eq, "olive", "no equality at all", ends, extra=extra)
    want = {
        mixed.id: "alertname=breaker_open, resource=~red.*|db",
        only_ops.id: "env!=test, resource!~coupon|risk, step=~p.+",
    }

    overview = _app("olive", "operator").run()
    assert not overview.exception, overview.exception
    shown = _frame(overview, "matchers", "creator")
    assert dict(zip(shown["id"], shown["matchers"], strict=True)) == want
    choices = overview.selectbox(key="silence_end").options

    alerts = _page("olive", "operator")
    assert not alerts.exception, alerts.exception
    listed = _frame(alerts, "matchers", "creator")
    assert dict(zip(listed["id"], listed["matchers"], strict=True)) == want
    assert sorted(alerts.selectbox(key="al_sil_expire").options) == sorted(choices)
    assert [c.split(" until ")[0] for c in choices] == [f"#{i} {m}" for i, m in want.items()]
