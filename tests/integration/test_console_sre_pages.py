"""AppTest tests of the SRE switch pages (issue 18): what is in force with one-click revert,
one live switch per kind and target, approvals that show impact and before/after,
degrade from the dependency map in two clicks, breakers with window ratios, hostile text
rendered inert, panels that fail alone."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "console" / "app.py")
PASSWORD = "correct-horse-battery"
HOSTILE = ("![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>")


@pytest.fixture
def console_db(sqlite_url, tmp_path, monkeypatch):
    """A migrated SQLite database with operators otto and olga and a viewer."""
    from console.auth import create_user
    from stability.depmap_seed import seed_if_empty
    from stability.depmap_store import DependencyMapStore

    url = sqlite_url
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("PAYWATCH_PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("PAYWATCH_REDIS_URL", raising=False)
    engine = sa.create_engine(url)
    seed_if_empty(
        DependencyMapStore(engine), ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C"), redis_lock=False
    )
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("olga", "operator")):
        create_user(engine, name, PASSWORD, role)
    with engine.begin() as conn:  # two merchants, each granted one pay org
        for mid, org in (("m-a", "SANDBOX_A"), ("m-b", "SANDBOX_B")):
            conn.execute(
                sa.text(
                    "insert into merchants (merchant_id, name, token_hash, token_prefix, status, "
                    "fee_bps, created_at) values (:m, :m, :m, 'x', 'active', 0, "
                    "'2026-01-01 00:00:00')"
                ),
                {"m": mid},
            )
            conn.execute(
                sa.text("insert into merchant_pay_orgs values (:m, :o)"), {"m": mid, "o": org}
            )
    yield engine
    engine.dispose()


def _service(engine):
    """The console's own switch service (same approval policy as the platform)."""
    from runtime.wiring import build_stability

    return build_stability(
        engine, pay_orgs=("SANDBOX_A", "SANDBOX_B", "SANDBOX_C"), redis_url=None
    ).switches


def _page(page: str, user: str, role: str = "operator") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["user"] = {"username": user, "role": role}
    at.run(timeout=30)
    at.switch_page(f"pages/{page}.py")
    return at.run(timeout=30)


def _texts(at: AppTest) -> str:
    """Every Markdown-rendered string on the page (what a browser would interpret)."""
    parts = [e.value for e in at.title] + [e.value for e in at.subheader]
    parts += [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.success] + [e.value for e in at.warning]
    parts += [e.value for e in at.error] + [e.value for e in at.info]
    return "\n".join(str(p) for p in parts)


def _plain(text: str) -> str:
    """What a person reads: Markdown escapes (``\\.``, ``\\(``) resolved."""
    return re.sub(r"\\(.)", r"\1", text)


def _table(at: AppTest, column: str):
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _switches(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "select id, kind, target, status, actor from stability_switches order by id"
                )
            )
        ]


def _actions(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text("select actor, action, target from console_audit order by id")
            )
        ]


def test_hostile_reasons_and_names_are_inert_on_every_switch_list(console_db):
    from console.safe import md

    svc = _service(console_db)
    svc.propose(
        "degrade", "channel.SANDBOX_A", actor="olga", reason=HOSTILE[0], ttl=timedelta(hours=1)
    )
    svc.propose(
        "degrade", "notification", actor=HOSTILE[1], reason=HOSTILE[2], ttl=timedelta(hours=1)
    )
    svc.propose("degrade", "risk", actor="olga", reason=HOSTILE[1], ttl=timedelta(hours=1))
    at = _page("sre_switches", "otto")
    assert not at.exception, at.exception
    text = _texts(at)
    for hostile in HOSTILE:
        assert hostile not in text, hostile  # never as Markdown/HTML
        assert md(hostile) in text, hostile  # but shown, escaped
    assert "](http" not in text  # no link or image target anywhere
    # the approval card of the hostile reason is there, with its Approve button
    assert at.button(key="sw_approve_1")


def test_a_second_apply_from_the_form_is_refused_with_a_clear_message(console_db):
    at = _page("sre_switches", "otto")
    at.selectbox(key="sw_kind").select("degrade")
    at.selectbox(key="sw_target").select("notification").run(timeout=30)
    at.text_input(key="sw_reason").input("notification slow")
    at.button(key="sw_apply").click().run(timeout=30)
    assert not at.exception, at.exception
    assert at.success and at.success[0].value.startswith("Switch #1 is active.")
    assert at.text_input(key="sw_reason").value == ""  # the form does not keep the reason
    # the same switch again (a second person, a second click): refused, nothing written
    again = _page("sre_switches", "olga")
    again.selectbox(key="sw_kind").select("degrade")
    again.selectbox(key="sw_target").select("notification").run(timeout=30)
    assert any("is already active (#1, by otto" in _plain(w.value) for w in again.warning)
    again.text_input(key="sw_reason").input("notification slow (twice)")
    again.button(key="sw_apply").click().run(timeout=30)
    assert not again.exception, again.exception
    errors = [_plain(e.value) for e in again.error]
    assert any(
        e.startswith(
            "switch.propose refused: a degrade switch for notification is already "
            "active (#1, by otto, until "
        )
        for e in errors
    ), errors
    assert _switches(console_db) == [(1, "degrade", "notification", "active", "otto")]
    assert _actions(console_db) == [
        ("otto", "switch.propose", "notification"),
        ("olga", "switch.propose", "notification"),
    ]


def test_now_in_force_lists_the_switch_and_reverts_it_after_a_confirmation(console_db):
    svc = _service(console_db)
    sw = svc.propose(
        "degrade", "risk", actor="olga", reason="risk brown-out", ttl=timedelta(hours=1)
    )
    at = _page("sre_switches", "otto")
    assert not at.exception, at.exception
    text = _plain(_texts(at))
    assert (
        f"**#{sw.id} degrade risk** · by olga · until **{sw.expires_at:%Y-%m-%d %H:%M} UTC**"
        in text
    )
    assert "Reason: risk brown-out" in text
    assert (
        "Before: called (timeout 300 ms) → after: not called; fallback: allow below risk "
        "threshold; review later"
    ) in text
    at.button(key=f"sw_revert_{sw.id}").click().run(timeout=30)
    assert _switches(console_db)[0][3] == "active"  # one click only asks
    assert any(f"Revert #{sw.id} (degrade risk)?" in w.value for w in at.warning)
    at.button(key=f"sw_revert_yes_{sw.id}").click().run(timeout=30)
    assert not at.exception, at.exception
    assert _switches(console_db)[0][3] == "reverted"
    assert at.success[0].value == f"Switch #{sw.id} reverted: degrade risk no longer applies."
    assert [t.value for t in at.toast] == [at.success[0].value]
    assert "No switch is in force." in _texts(at)
    assert svc.audit_log()[0]["action"] == "reverted" and svc.audit_log()[0]["actor"] == "otto"


def test_cancel_leaves_the_switch_in_force(console_db):
    sw = _service(console_db).propose(
        "degrade", "notification", actor="olga", reason="slow", ttl=timedelta(hours=1)
    )
    at = _page("sre_switches", "otto")
    at.button(key=f"sw_revert_{sw.id}").click().run(timeout=30)
    at.button(key=f"sw_revert_cancel_{sw.id}").click().run(timeout=30)
    assert not at.exception and _switches(console_db)[0][3] == "active"
    assert at.button(key=f"sw_revert_{sw.id}")


def test_the_approver_sees_impact_and_before_after_and_gets_a_confirmation(console_db):
    svc = _service(console_db)
    sw = svc.propose(
        "degrade", "channel.SANDBOX_A", actor="olga", reason="channel down", ttl=timedelta(hours=2)
    )
    assert sw.status == "pending"
    proposer = _page("sre_switches", "olga")
    assert f"sw_approve_{sw.id}" not in {b.key for b in proposer.button}
    assert "Needs another person's approval." in _texts(proposer)
    at = _page("sre_switches", "otto")
    text = _plain(_texts(at))
    assert "Core links failing: link.pay, link.refund" in text, text
    assert "Pay orgs: SANDBOX_A" in text
    grades = next(line for line in text.splitlines() if line.startswith("Grade: "))
    for link in ("link.pay", "link.refund"):  # and the jobs' edges, once the map has them
        assert f"{link} → channel.SANDBOX_A: strong" in grades
    before = next(line for line in text.splitlines() if line.startswith("Before: called"))
    assert before.startswith("Before: called (timeout 3000 ms) → **after: not called; ")
    assert before.endswith(" fail fast**") and "link.pay, link.refund" in before
    assert "Merchants: m-a\n" in text  # granted SANDBOX_A; m-b is not
    at.button(key=f"sw_approve_{sw.id}").click().run(timeout=30)
    assert not at.exception, at.exception
    assert _plain(at.success[0].value) == (
        f"Switch #{sw.id} approved: degrade channel.SANDBOX_A "
        f"is active until {sw.expires_at:%Y-%m-%d %H:%M} UTC."
    )
    assert svc.get(sw.id).status == "active" and svc.get(sw.id).approved_by == "otto"
    assert f"**#{sw.id} degrade channel.SANDBOX_A** · by olga, approved by otto" in _plain(
        _texts(at)
    )


def test_degrade_a_weak_dependency_from_the_map_in_two_clicks(console_db):
    at = _page("oncall_depmap", "otto")
    assert not at.exception, at.exception
    assert {b.key for b in at.button} >= {
        "dm_degrade_risk",
        "dm_degrade_notification",
        "dm_degrade_ledger.hot_account",
    }
    assert "dm_degrade_channel.SANDBOX_A" not in {b.key for b in at.button}  # strong
    at.button(key="dm_degrade_risk").click().run(timeout=30)  # click 1
    assert at.number_input(key="dm_hours").value == 1.0
    at.text_input(key="dm_reason").input("risk p99 at 3 s")
    at.button[[b.label for b in at.button].index("Apply")].click().run(timeout=30)  # click 2
    assert not at.exception, at.exception
    assert _switches(console_db) == [(1, "degrade", "risk", "active", "otto")]
    svc = _service(console_db)
    sw = svc.get(1)
    assert timedelta(minutes=59) < sw.expires_at - sw.created_at <= timedelta(hours=1)
    assert sw.reason == "risk p99 at 3 s"
    assert at.success[0].value.startswith("Switch #1 is active. degrade risk until ")
    assert "dm_degrade_risk" not in {b.key for b in at.button}
    assert "risk: degraded (#1 by otto until" in _plain(_texts(at))
    assert _actions(console_db) == [("otto", "switch.propose", "risk")]


def test_the_map_form_needs_a_reason_and_a_viewer_gets_no_buttons(console_db):
    at = _page("oncall_depmap", "otto")
    at.button(key="dm_degrade_notification").click().run(timeout=30)
    at.button[[b.label for b in at.button].index("Apply")].click().run(timeout=30)
    assert [e.value for e in at.error] == ["A reason is required."]
    assert _switches(console_db) == []
    viewer = _page("oncall_depmap", "vera", "viewer")
    assert not viewer.exception
    assert not [b for b in viewer.button if (b.key or "").startswith("dm_degrade")]


def test_breakers_show_window_ratios_the_forcing_switch_and_grouped_events(console_db):
    from stability.breaker import BreakerConfig, CircuitBreaker
    from stability.breaker_stats import BreakerStatsPublisher
    from stability.events import BreakerEventLog

    risk = CircuitBreaker("risk", BreakerConfig(window_size=20, min_calls=10))
    for i in range(10):  # 3 failures, 2 slow: below both thresholds, still closed
        risk.record(success=i >= 3, duration_s=2.0 if i in (5, 6) else 0.01)
    coupon = CircuitBreaker("coupon")
    coupon.record(True, 0.01)
    BreakerStatsPublisher(
        console_db, lambda: {"risk": risk, "coupon": coupon}, node="api-1"
    ).publish_once()
    sw = _service(console_db).propose(
        "force_breaker",
        "notification",
        actor="olga",
        reason="drill",
        ttl=timedelta(minutes=30),
        params={"state": "forced_open"},
    )
    log = BreakerEventLog(console_db)
    for _ in range(12):  # a flapping breaker
        log.breaker_changed("ledger.hot_account", "open", "half_open", "cool-down elapsed")
        log.breaker_changed("ledger.hot_account", "half_open", "open", "half-open probe failed")
    at = _page("sre_breakers", "otto")
    assert not at.exception, at.exception
    table = _table(at, "failure_ratio").set_index("resource")
    assert table.loc["risk", "calls"] == 10 and table.loc["risk", "state"] == "closed"
    assert table.loc["risk", "failure_ratio"] == 0.3 and table.loc["risk", "slow_ratio"] == 0.2
    assert table.loc["risk", "opens_at"] == "fail ≥ 0.5 or slow (≥ 1 s) ≥ 0.5, 10+ of last 20"
    assert table.loc["coupon", "calls"] == 1 and table.loc["coupon", "failure_ratio"] == 0
    assert table.loc["notification", "state"] == "forced_open"
    assert table.loc["notification", "forced_by"] == (
        f"#{sw.id} by olga until {sw.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    assert table.loc["ledger.hot_account", "state"] == "open"
    groups = _table(at, "transition")
    assert len(groups) == 2 and sorted(groups["count"]) == [12, 12]
    assert set(groups["transition"]) == {"open → half_open", "half_open → open"}


def test_a_breaker_panel_fails_alone(console_db):
    from stability.events import BreakerEventLog

    BreakerEventLog(console_db).breaker_changed("risk", "closed", "open", "failure ratio")
    with console_db.begin() as conn:
        conn.execute(sa.text("drop table stability_breaker_stats"))
    at = _page("sre_breakers", "otto")
    assert not at.exception, at.exception
    assert any("The database is unavailable" in w.value for w in at.warning)
    assert _table(at, "transition")["resource"].tolist() == ["risk"]  # the events panel works
    assert "Timeout lint" in _texts(at)


def test_the_proposer_withdraws_a_pending_switch_and_the_form_shows_before_after(console_db):
    sw = _service(console_db).propose(
        "degrade",
        "channel.SANDBOX_B",
        actor="otto",
        reason="channel B down",
        ttl=timedelta(hours=1),
    )
    at = _page("sre_switches", "otto")
    at.selectbox(key="sw_kind").select("set_limit").run(timeout=30)
    at.selectbox(key="sw_target").select("risk.total").run(timeout=30)
    assert (
        "Before: enforced: rate 5000/s, burst 10000 → after: enforced: rate 100/s, burst 200"
        in _plain(_texts(at))
    )
    at.button(key=f"sw_withdraw_{sw.id}").click().run(timeout=30)
    assert not at.exception, at.exception
    assert at.success[0].value == f"Switch #{sw.id} withdrawn."
    assert _switches(console_db) == [(sw.id, "degrade", "channel.SANDBOX_B", "reverted", "otto")]


def test_a_process_silent_for_90_s_is_left_out_of_the_breaker_figures(console_db):
    from datetime import UTC, datetime

    from stability.breaker import CircuitBreaker
    from stability.breaker_stats import BreakerStatsPublisher

    risk = CircuitBreaker("risk")
    for ok in (True, False):
        risk.record(ok, 0.01)
    old = datetime.now(UTC) - timedelta(minutes=2)
    BreakerStatsPublisher(
        console_db, lambda: {"risk": risk}, node="gone", clock=lambda: old
    ).publish_once()
    risk.record(True, 0.01)
    BreakerStatsPublisher(console_db, lambda: {"risk": risk}, node="live").publish_once()
    at = _page("sre_breakers", "otto")
    row = _table(at, "failure_ratio").set_index("resource").loc["risk"]
    assert (row["calls"], row["processes"], row["failure_ratio"]) == (3, 1, 0.333)
