"""AppTest tests of the on-call and SRE console pages, over a migrated temp SQLite DB."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "console" / "app.py")
PASSWORD = "correct-horse-battery"


@pytest.fixture
def console_db(sqlite_url, tmp_path, monkeypatch):
    """A migrated SQLite database with one user per role; env points the console at it."""
    from console.auth import create_user

    url = sqlite_url
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("PAYWATCH_PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("PAYWATCH_REDIS_URL", raising=False)
    engine = sa.create_engine(url)
    for name, role in (
        ("vera", "viewer"),
        ("otto", "operator"),
        ("olga", "operator"),
        ("ada", "admin"),
    ):
        create_user(engine, name, PASSWORD, role)
    yield engine
    engine.dispose()


def _app(user: str | None = None, role: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if user:
        at.session_state["user"] = {"username": user, "role": role}
    return at


def _page(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"pages/{page}.py")
    return at.run(timeout=30)


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.title] + [e.value for e in at.subheader]
    parts += [e.value for e in at.markdown] + [e.value for e in at.caption]
    return "\n".join(str(p) for p in parts)


def _table(at: AppTest, column: str):
    """The first table with ``column`` (AppTest does not expose dataframe keys)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _audit(engine) -> list:
    with engine.connect() as conn:
        return conn.execute(
            sa.text("select actor, role, action, target, detail from console_audit order by id")
        ).all()


def test_login_form_signs_in_and_audits(console_db):
    at = _app().run(timeout=30)
    assert not at.exception
    at.text_input(key="login_username").input("vera")
    at.text_input(key="login_password").input("wrong password")
    at.button[0].click().run(timeout=30)
    assert at.error and "Invalid" in at.error[0].value
    assert "user" not in at.session_state
    at.text_input(key="login_password").input(PASSWORD)
    at.button[0].click().run(timeout=30)
    assert not at.exception
    assert at.session_state["user"] == {"username": "vera", "role": "viewer"}
    assert "Overview" in _texts(at)
    actions = [r.action for r in _audit(console_db)]
    assert actions == ["login_failed", "login"]


def test_overview_page_renders_links_backlogs_alerts(console_db):
    with console_db.begin() as conn:
        conn.execute(
            sa.text(
                "insert into alert_states (fingerprint, rule, labels, annotations, severity, state,"
                " value, active_since, fired_at, resolved_at, last_eval) values ('f1', "
                "'PayLinkErrors', '{\"step\": \"pay\"}', '{}', 'page', 'firing', 0.2, 1, 1, null, 1)"
            )
        )
    at = _app("vera", "viewer").run(timeout=30)
    assert not at.exception, at.exception
    text = _texts(at)
    for part in ("Core links", "Channel health", "Active alerts", "Backlogs", "Guard fallbacks"):
        assert part in text
    for step in (
        "trade_create",
        "pay",
        "callback",
        "refund",
        "channel_call",
        "ledger_posting",
        "notification",
    ):
        assert f"**{step}**" in text
    alerts = _table(at, "rule")
    assert list(alerts["rule"]) == ["PayLinkErrors"]
    assert [m.label for m in at.metric][-3:] == [
        "Compensation pending",
        "Notifications pending",
        "Pending postings",
    ]


def test_link_drilldown_page(console_db):
    at = _page(_app("vera", "viewer").run(timeout=30), "oncall_link")
    assert not at.exception, at.exception
    assert "Link drill-down" in _texts(at)
    at.selectbox(key="url_link").select("refund")
    at.selectbox(key="url_window").select("6h").run(timeout=30)
    assert not at.exception
    assert [m.label for m in at.metric] == ["Requests/s", "Success", "p99"]
    assert at.query_params["link"] in ("refund", ["refund"])  # shareable: the view is in the URL
    assert at.query_params["window"] in ("6h", ["6h"])


def test_dependency_map_page_with_impact(console_db):
    at = _page(_app("vera", "viewer").run(timeout=30), "oncall_depmap")
    assert not at.exception, at.exception
    nodes = _table(at, "breaker")
    assert "risk" in set(nodes["resource"])
    at.multiselect(key="dm_impact").select("risk").run(timeout=30)
    assert not at.exception
    assert "link.pay: degrades (via risk)" in _texts(at).replace("\\", "")


def test_viewer_cannot_open_sre_pages(console_db):
    at = _app("vera", "viewer").run(timeout=30)
    for page in ("sre_switches", "sre_breakers", "sre_drills"):
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            _page(at, page)
    at = AppTest.from_function(
        _direct_page, args=("sre_switches.py", "vera", "viewer"), default_timeout=30
    ).run(timeout=30)
    assert at.error and "not allowed" in at.error[0].value
    assert not [b for b in at.button if b.key == "sw_apply"]


def _direct_page(page: str, user: str, role: str) -> None:
    """Runs a page script directly (outside the navigation), as a crafted URL would."""
    import runpy

    import streamlit as st

    from console.pages import PAGES_DIR

    st.session_state["user"] = {"username": user, "role": role}
    runpy.run_path(str(PAGES_DIR / page))


def test_operator_degrades_notification_with_reason_and_expiry(console_db):
    at = _page(_app("otto", "operator").run(timeout=30), "sre_switches")
    assert not at.exception, at.exception
    at.selectbox(key="sw_kind").select("degrade")
    targets = at.selectbox(key="sw_target").options
    assert {"notification", "coupon"} <= set(targets)  # what the map calls (#21: coupon)
    assert not any(t.startswith(("link.", "job.")) for t in targets)
    at.selectbox(key="sw_target").select("notification").run(timeout=30)
    assert at.number_input(key="sw_hours").value == 1.0  # expiry defaults to 1 h
    at.button(key="sw_apply").click().run(timeout=30)  # no reason
    assert {e.value for e in at.error} == {"a reason is required"}
    at.text_input(key="sw_reason").input("merchant endpoints slow, shed it")
    at.number_input(key="sw_hours").set_value(2.0)
    at.button(key="sw_dry_run").click().run(timeout=30)
    assert at.json and "notification" in str(at.json[0].value)
    with console_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from stability_switches")).scalar() == 0
    at.button(key="sw_apply").click().run(timeout=30)
    assert not at.exception, at.exception
    assert at.success and "active" in at.success[0].value
    with console_db.connect() as conn:
        rows = conn.execute(
            sa.text("select kind, target, actor, status, reason from stability_switches")
        ).all()
    assert [tuple(r) for r in rows] == [
        ("degrade", "notification", "otto", "active", "merchant endpoints slow, shed it")
    ]
    audit = _audit(console_db)
    assert [(r.actor, r.role, r.action, r.target) for r in audit] == [
        ("otto", "operator", "switch.propose", "notification")
    ]
    assert '"ok": true' in audit[0].detail


def test_core_link_switch_needs_confirmation_and_second_person(console_db):
    at = _page(_app("otto", "operator").run(timeout=30), "sre_switches")
    at.selectbox(key="sw_kind").select("degrade")
    target = _strong_target(console_db)
    at.selectbox(key="sw_target").select(target).run(timeout=30)
    at.text_input(key="sw_reason").input("drill")
    at.number_input(key="sw_hours").set_value(1.0).run(timeout=30)
    assert at.checkbox(key="sw_confirm")
    at.button(key="sw_apply").click().run(timeout=30)
    assert any("confirmation" in e.value for e in at.error)
    at.checkbox(key="sw_confirm").check()
    at.button(key="sw_apply").click().run(timeout=30)
    assert at.success and "pending" in at.success[0].value
    with console_db.connect() as conn:
        sid = conn.execute(sa.text("select id from stability_switches")).scalar_one()
    # the proposer sees no approve button; another operator approves
    assert not [b for b in at.button if b.key == f"sw_approve_{sid}"]
    other = _page(_app("olga", "operator").run(timeout=30), "sre_switches")
    other.button(key=f"sw_approve_{sid}").click().run(timeout=30)
    assert not other.exception, other.exception
    with console_db.connect() as conn:
        status, approver = conn.execute(
            sa.text("select status, approved_by from stability_switches")
        ).one()
    assert (status, approver) == ("active", "olga")
    assert [r.action for r in _audit(console_db)] == ["switch.propose", "switch.approve"]


def _strong_target(engine) -> str:
    from stability.depmap_store import DependencyMapStore
    from stability.policy import is_strong_dependency

    dmap = DependencyMapStore(engine).load()
    return next(r.name for r in dmap.resources if is_strong_dependency(dmap, r.name))


def test_breakers_page_lists_events_and_lint(console_db):
    from stability.events import BreakerEventLog

    BreakerEventLog(console_db).breaker_changed("risk", "closed", "open", "failure ratio")
    at = _page(_app("otto", "operator").run(timeout=30), "sre_breakers")
    assert not at.exception, at.exception
    states = _table(at, "state")
    assert dict(zip(states["resource"], states["state"], strict=True))["risk"] == "open"
    assert "Timeout lint" in _texts(at)


def test_drills_page_lists_reports_and_shows_one(console_db, monkeypatch):
    from simulator.report import save_report

    base = {
        "target": "SANDBOX_A",
        "time_factor": 0.1,
        "reason": "",
        "started_at": "2026-11-23T03:00:00+00:00",
        "finished_at": "2026-11-23T03:01:00+00:00",
        "steps": [
            {
                "at_s": 6.0,
                "kind": "knobs",
                "target": "SANDBOX_A",
                "params": {"error_rate": 1.0},
                "note": "channel down",
            }
        ],
        "traffic": {
            "pays_sent": 120,
            "paid": 110,
            "pay_failed": 2,
            "pays_refused": 8,
            "refusals": {"pay:dependency_unavailable:channel.SANDBOX_A": 8},
        },
        "audit": {"lost": 0, "doubled": 0},
        "platform": {
            "alerts_fired": ["slo_channel_call_success_sandbox_a_fast"],
            "alerts": [
                {
                    "rule": "slo_channel_call_success_sandbox_a_fast",
                    "state": "firing",
                    "at_s": 7.5,
                    "value": 12.5,
                }
            ],
            "breakers_opened": ["channel.SANDBOX_A"],
            "breaker_events": [
                {
                    "resource": "channel.SANDBOX_A",
                    "from": "closed",
                    "to": "open",
                    "reason": "failure ratio",
                    "at_s": 12.0,
                }
            ],
            "guard_outcomes": {"channel.SANDBOX_A": {"breaker_open": 8.0}},
            "fallbacks_taken": 0,
            "fail_fast": 8,
            "money_not_returned": 0,
            "trial_balance": {"ok": True},
            "recon": {"differences": 0},
        },
        "checks": {"no_payment_lost": True, "no_payment_doubled": True},
    }
    save_report(
        console_db,
        {**base, "drill": {"name": "channel-failure", "summary": "down"}, "status": "passed"},
    )
    save_report(
        console_db,
        {
            **base,
            "drill": {"name": "redis-down", "summary": "redis"},
            "status": "not_applicable",
            "reason": "no Redis is configured",
            "started_at": "2026-11-23T04:00:00+00:00",
        },
    )
    monkeypatch.setenv("PAYWATCH_SANDBOX_URL", "http://127.0.0.1:9")  # nothing listens
    at = _page(_app("otto", "operator").run(timeout=30), "sre_drills")
    assert not at.exception, at.exception
    reports = _table(at, "lost")
    assert list(reports["name"]) == ["redis-down", "channel-failure"]  # newest first
    assert list(reports["status"]) == ["not_applicable", "passed"]
    assert "Not applicable: no Redis is configured" in [w.value for w in at.warning]
    first_id = int(reports["id"].iloc[1])
    at.selectbox(key="drill_report").select(first_id).run(timeout=30)
    assert not at.exception, at.exception
    assert "**channel\\-failure** on SANDBOX\\_A: down" in _texts(at)  # names via md()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "passed" and metrics["Lost"] == "0"
    assert metrics["Fallbacks / fail-fast"] == "0 / 8"
    breakers = _table(at, "to")
    assert list(breakers["resource"]) == ["channel.SANDBOX_A"]
    assert list(_table(at, "breaker_open")["resource"]) == ["channel.SANDBOX_A"]
    # the knobs panel failed alone (the sandbox is down; its test: test_console_ops_pages.py)
    assert any("sandbox channel is unavailable" in w.value for w in at.warning)
    assert not at.slider
