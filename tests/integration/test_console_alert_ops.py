"""On-call → Alerts (issue 22, point 7): silences with matchers, comment and end required
(creator = the signed-in user), ended again; acknowledgements; what the dispatcher then
does (silenced, acked: not notified, shown so on the page and in the notification log);
inhibited alerts badged; viewers read only; every action audited. AppTest runs the real
``console/app.py`` over a migrated SQLite database."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from alert_series import FakeQuery, RecordingNotifier
from oncall_app import (
    _app,
    _everything,
    _markdown,
    oncall_db,  # noqa: F401 - fixture
    put_alert,
)

from alerts import AlertEngine, QuerySpec, ThresholdRule

PAGE = "pages/oncall_alerts.py"


def _page(user: str, role: str):
    at = _app(user, role).run()
    at.switch_page(PAGE)
    return at.run()


def _audit(engine) -> list:
    with engine.connect() as conn:
        q = "select actor, role, action, target, detail from console_audit order by id"
        return [r for r in conn.execute(sa.text(q)) if r.action.startswith("alert.")]


def _engine(db, notifier, **timing: float) -> AlertEngine:
    q = FakeQuery()
    for res in ("redis", "coupon"):
        q.gauge("breaker", {"resource": res}, lambda t: 1.0)
    rule = ThresholdRule(
        "breaker_open", QuerySpec("latest", "breaker", by=("resource",)), ">=", 1, severity="page"
    )
    return AlertEngine(
        db,
        q,
        [rule],
        notifier=notifier,
        group_by=("rule", "resource"),
        **({"group_wait": 30} | timing),
    )


def test_viewer_reads_but_cannot_act(oncall_db):
    put_alert(oncall_db, "breaker_open", {"resource": "coupon"}, summary="coupon breaker")
    at = _page("vera", "viewer")
    assert not at.exception, at.exception
    assert at.title[0].value == "Alerts"
    assert any("coupon breaker" in m for m in _markdown(at))
    assert not [b for b in at.button if b.label in ("Silence", "Acknowledge", "End silence")]
    assert "Notification log" in [s.value for s in at.subheader]


def test_operator_silences_then_the_alert_is_not_notified_and_shows_silenced(oncall_db):
    notifier = RecordingNotifier()
    eng = _engine(oncall_db, notifier)
    t0 = time.time()
    eng.evaluate(now=t0)  # firing, waiting for group_wait: nothing sent yet
    redis = next(a for a in eng.active() if a.labels["resource"] == "redis")

    at = _page("olive", "operator")
    assert not at.exception, at.exception
    at.selectbox(key="al_sil_from").select(redis.fingerprint).run()
    assert at.text_area(key="al_sil_matchers").value == (
        "alertname=breaker_open\nresource=redis\nseverity=page"
    )
    at.text_input(key="al_sil_comment").input("redis failover drill")
    at.button(key="al_sil_submit").click().run()  # no end: refused, nothing written
    assert not at.exception, at.exception
    assert any("needs an end" in e.value for e in at.error)
    at.text_input(key="al_sil_for").input("2h")
    at.text_input(key="al_sil_comment").input("")
    at.button(key="al_sil_submit").click().run()  # no comment: refused
    assert any("comment" in e.value for e in at.error)
    assert SilenceStoreAll(oncall_db) == []
    at.text_input(key="al_sil_comment").input("redis failover drill")
    at.text_input(key="al_sil_for").input("2h")
    at.button(key="al_sil_submit").click().run()
    assert not at.exception, at.exception
    assert at.success and "made, until" in at.success[0].value
    [s] = SilenceStoreAll(oncall_db)
    assert (s.creator, s.comment) == ("olive", "redis failover drill")
    assert s.matchers == {"alertname": "breaker_open", "resource": "redis", "severity": "page"}
    assert t0 + 7200 - 5 < s.ends_at < time.time() + 7200 + 5

    # the dispatcher: redis is silenced (logged), coupon is notified
    eng.evaluate(now=time.time() + 60)
    assert [a.labels["resource"] for n in notifier.sent for a in n.alerts] == ["coupon"]
    at.run()
    rows = [m for m in _markdown(at) if "-badge[" in m]
    assert any("silenced until" in r and "by olive" in r and "redis" in r for r in rows)
    assert not any("silenced" in r and "coupon" in r for r in rows)
    log = _frame(at, "receiver")
    assert sorted(log["status"]) == ["sent", "silenced"]
    why = log[log["status"] == "silenced"]["why / error"].iloc[0]
    assert why == f"silence #{s.id} by olive"

    # ended from the page
    at.selectbox(key="al_sil_expire").select(s.id)
    at.button(key="al_sil_expire_click").click().run()
    assert not at.exception, at.exception
    assert SilenceStoreActive(oncall_db) == []
    actions = [(a.actor, a.action, json.loads(a.detail)["ok"]) for a in _audit(oncall_db)]
    assert actions == [
        ("olive", "alert.silence", False),
        ("olive", "alert.silence", False),
        ("olive", "alert.silence", True),
        ("olive", "alert.unsilence", True),
    ]


def test_operator_acknowledges_and_repeats_stop(oncall_db):
    notifier = RecordingNotifier()
    eng = _engine(oncall_db, notifier, group_wait=0, group_interval=0, repeat_interval=60)
    t0 = time.time() - 120
    eng.evaluate(now=t0)
    eng.evaluate(now=t0 + 30)
    assert len(notifier.sent) == 2
    coupon = next(a for a in eng.active() if a.labels["resource"] == "coupon")

    at = _page("olive", "operator")
    at.selectbox(key="al_ack_alert").select(coupon.fingerprint)
    at.text_input(key="al_ack_comment").input("coupon team is on it")
    at.button(key="al_ack_submit").click().run()
    assert not at.exception, at.exception
    assert at.success and "Acknowledged breaker\\_open" in at.success[0].value
    assert any("acked by olive" in m and "coupon team" in m for m in _markdown(at))
    overview = _app("vera", "viewer").run()  # the Overview says so too, for everyone
    acked = [m for m in _markdown(overview) if "acked by olive" in m]
    assert len(acked) == 1 and "coupon team" in acked[0] and "breaker" in acked[0], acked
    eng.evaluate(now=time.time() + 60)  # past the repeat interval
    repeated = [a.labels["resource"] for n in notifier.sent[2:] for a in n.alerts]
    assert repeated == ["redis"]  # the acknowledged coupon alert is not paged again
    at.run()
    assert "acked" in set(_frame(at, "receiver")["status"])
    assert _frame(at, "fingerprint", "by")["by"].tolist() == ["olive"]
    [audit] = _audit(oncall_db)
    assert (audit.actor, audit.role, audit.action, audit.target) == (
        "olive",
        "operator",
        "alert.ack",
        "breaker_open",
    )


def test_inhibited_alerts_are_badged(oncall_db):
    put_alert(oncall_db, "breaker_open", {"resource": "database"}, summary="database down")
    put_alert(oncall_db, "slo_pay_success", {"step": "pay"}, summary="pay burning")
    at = _page("vera", "viewer")
    assert not at.exception, at.exception
    pay = next(m for m in _markdown(at) if "pay burning" in m)
    assert "inhibited by breaker\\_open" in pay or "inhibited by breaker_open" in pay
    assert "database_breaker_open" in _everything(at) or "database\\_breaker\\_open" in pay
    overview = _app("vera", "viewer").run()  # the Overview badges it the same way
    assert [m for m in _markdown(overview) if "pay burning" in m] == [pay]


def _frame(at, *columns: str):
    """The page's table that has ``columns`` (AppTest finds dataframes by position)."""
    return next(d.value for d in at.dataframe if set(columns) <= set(d.value.columns))


def SilenceStoreAll(engine):  # noqa: N802 - reads like the store
    from alerts.silences import SilenceStore

    return SilenceStore(engine).all()


def SilenceStoreActive(engine):  # noqa: N802
    from alerts.silences import SilenceStore

    return SilenceStore(engine).active()


def test_generator_url_focus_narrows_history_and_log(oncall_db):
    """Alertmanager's generatorURL opens this page with ``?alert=<fingerprint>``."""
    notifier = RecordingNotifier()
    eng = _engine(oncall_db, notifier, group_wait=0)
    eng.evaluate(now=time.time())
    redis = next(a for a in eng.active() if a.labels["resource"] == "redis")
    at = _app("vera", "viewer").run()
    at.query_params["alert"] = redis.fingerprint
    at.switch_page(PAGE)
    at.run()
    assert not at.exception, at.exception
    history = _frame(at, "change")
    assert history["fingerprint"].tolist() == [redis.fingerprint[:12]]
    assert _frame(at, "receiver")["alerts"].tolist() == ["breaker_open"]
    assert any("only" in i.value for i in at.info)
