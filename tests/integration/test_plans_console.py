"""AppTest tests of switch plans on the Switches page (PostgreSQL): a run proposed from
the form and approved in one click by a second person, shown on the Overview, reverted in
one click; the platform's own proposals (a weak breaker open, a firing alert) approved in
one click; would-be blocks per rule and the trial limit."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "console" / "app.py")
ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")


@pytest.fixture
def console_pg(pg_url, tmp_path, monkeypatch):
    """A migrated PostgreSQL database with operators otto and olga and a viewer."""
    from console.auth import create_user
    from stability.depmap_seed import seed_if_empty
    from stability.depmap_store import DependencyMapStore

    monkeypatch.setenv("PAYWATCH_DATABASE_URL", pg_url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("PAYWATCH_PROMETHEUS_URL", raising=False)
    monkeypatch.delenv("PAYWATCH_REDIS_URL", raising=False)
    engine = sa.create_engine(pg_url)
    seed_if_empty(DependencyMapStore(engine), ORGS, redis_lock=False)
    for name, role in (("vera", "viewer"), ("otto", "operator"), ("olga", "operator")):
        create_user(engine, name, "correct-horse-battery", role)
    yield engine
    engine.dispose()


def _page(page: str, user: str, role: str = "operator", plan: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    at.session_state["user"] = {"username": user, "role": role}
    at.run(timeout=60)
    at.switch_page(f"pages/{page}.py")
    if plan is not None:
        at.query_params["plan"] = plan
    return at.run(timeout=60)


def _plain(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.markdown] + [e.value for e in at.caption]
    parts += [e.value for e in at.success] + [e.value for e in at.info]
    parts += [e.value for e in at.error] + [e.value for e in at.warning]
    return _plain("\n".join(str(p) for p in parts))


def _snapshot(engine):
    from stability.switches import SwitchService

    return SwitchService(engine).snapshot()


def _runs(engine) -> list[tuple]:
    with engine.connect() as conn:
        q = "select id, plan_name, status, actor, approved_by from stability_plan_runs order by id"
        return [tuple(r) for r in conn.execute(sa.text(q))]


def _console_actions(engine) -> list[tuple]:
    with engine.connect() as conn:
        q = "select actor, action, target from console_audit order by id"
        return [tuple(r) for r in conn.execute(sa.text(q))]


def test_run_a_plan_approve_it_in_one_click_see_it_on_the_overview_and_revert_it(console_pg):
    olga = _page("sre_switches", "olga", plan="channel SANDBOX_A outage")
    assert not olga.exception, olga.exception
    assert olga.selectbox(key="url_plan").value == "channel SANDBOX_A outage"
    text = _texts(olga)
    assert "1. force the breaker of channel.SANDBOX_A open" in text
    assert (
        "Runbook: docs/runbook.md#channel_down, docs/runbook.md#slo_channel_call_success_org"
        in text
    )
    olga.text_input(key="plan_reason").input("SANDBOX_A answers 502")
    olga.button(key="plan_run").click().run(timeout=60)
    assert not olga.exception, olga.exception
    assert _plain(olga.success[0].value) == (
        "Plan run #1 (channel SANDBOX_A outage) proposed: it is pending, waiting for a second "
        "person's approval."
    )
    assert _runs(console_pg) == [(1, "channel SANDBOX_A outage", "pending", "olga", None)]
    assert "plan_approve_1" not in {b.key for b in olga.button}  # not her own
    assert _snapshot(console_pg).forced == {}  # nothing applies before approval

    otto = _page("sre_switches", "otto")
    assert "Plan run #1: channel SANDBOX_A outage** proposed by olga" in _texts(otto)
    otto.button(key="plan_approve_1").click().run(timeout=60)  # one click
    assert not otto.exception, otto.exception
    assert _plain(otto.success[0].value).startswith(
        "Plan run #1 (channel SANDBOX_A outage) approved: it is active until "
    )
    snap = _snapshot(console_pg)
    assert snap.forced == {"channel.SANDBOX_A": "forced_open"}
    assert snap.limits["channel.SANDBOX_A.total"]["rate"] == 1000.0
    assert "switch of channel.SANDBOX_A" not in _texts(otto)
    assert "→ switch #1" in _texts(otto) and "→ silence #1" in _texts(otto)

    overview = _page("oncall_overview", "vera", role="viewer")
    assert not overview.exception, overview.exception
    assert any(
        "Plan in force: **channel SANDBOX_A outage** (run #1), by olga, approved by otto"
        in _plain(i.value)
        for i in overview.info
    )

    otto = _page("sre_switches", "otto")
    otto.button(key="plan_revert_1").click().run(timeout=60)  # one click, one action
    assert not otto.exception, otto.exception
    assert (_snapshot(console_pg).forced, _snapshot(console_pg).limits) == ({}, {})
    assert _runs(console_pg)[0][2] == "reverted"
    assert [a for a in _console_actions(console_pg) if a[1].startswith("plan.")] == [
        ("olga", "plan.run", "channel SANDBOX_A outage"),
        ("otto", "plan.approve", "channel SANDBOX_A outage"),
        ("otto", "plan.revert", "channel SANDBOX_A outage"),
    ]
    overview = _page("oncall_overview", "vera", role="viewer")
    assert not any("Plan in force" in i.value for i in overview.info)


def test_a_weak_dependencys_open_breaker_proposes_its_plan_for_one_click_approval(console_pg):
    from stability.breaker import BreakerConfig, CircuitBreaker
    from stability.breaker_stats import BreakerStatsPublisher

    notification = CircuitBreaker("notification", BreakerConfig(window_size=10, min_calls=5))
    channel = CircuitBreaker("channel.SANDBOX_B", BreakerConfig(window_size=10, min_calls=5))
    for _ in range(6):
        notification.record(False, 0.01)
        channel.record(False, 0.01)
    assert notification.snapshot().state == "open"
    BreakerStatsPublisher(
        console_pg, lambda: {"notification": notification, "channel.SANDBOX_B": channel}
    ).publish_once()

    otto = _page("sre_switches", "otto")
    assert not otto.exception, otto.exception
    assert "proposed by the platform (breaker:notification)" in _texts(otto)
    # only the weak dependency: a strong channel's breaker proposes nothing
    assert [r[1:4] for r in _runs(console_pg)] == [("degrade notification", "pending", "system")]
    otto.button(key="plan_approve_1").click().run(timeout=60)
    assert not otto.exception, otto.exception
    assert _snapshot(console_pg).degraded == {"notification"}
    assert _runs(console_pg)[0][2:] == ("active", "system", "otto")
    _page("sre_switches", "olga")  # a second look proposes nothing again
    assert len(_runs(console_pg)) == 1


def test_a_firing_alert_links_and_proposes_its_plan(console_pg):
    from alerts.defaults import default_rules
    from console.views.alerts import active_alerts

    rule = next(r for r in default_rules(ORGS) if r.name == "slo_channel_call_success_sandbox_b")
    notes = {**rule.annotations, "summary": "channel calls to SANDBOX_B are failing"}
    with console_pg.begin() as conn:
        conn.execute(
            sa.text(
                "insert into alert_states (fingerprint, rule, labels, annotations, severity, "
                "state, active_since, fired_at, last_eval) values ('f1', :r, :l, :a, 'page', "
                "'firing', :t, :t, :t)"
            ),
            {
                "r": rule.name,
                "l": json.dumps({"alertname": rule.name, "pay_org": "SANDBOX_B"}),
                "a": json.dumps(notes),
                "t": time.time(),
            },
        )
    otto = _page("sre_switches", "otto")
    assert not otto.exception, otto.exception
    assert "proposed by the platform (alert:slo_channel_call_success_sandbox_b)" in _texts(otto)
    (alert,) = active_alerts(console_pg)
    assert alert["plan"] == "channel SANDBOX_B outage"
    overview = _page("oncall_overview", "vera", role="viewer")
    assert "[plan: channel SANDBOX_B outage](/sre_switches?plan=channel+SANDBOX_B+outage)" in (
        _plain("\n".join(m.value for m in overview.markdown))
    )


def test_a_trial_limit_in_one_step_and_its_would_be_blocks_per_rule(console_pg):
    from prometheus_client import CollectorRegistry

    from collectors import CoreMetrics, Sampler, TimeSeriesStore
    from stability.depmap_seed import default_map
    from stability.guard import Guard
    from stability.policy import default_rules

    olga = _page("sre_switches", "olga")
    assert "No limit rule counts in dry run" in _texts(olga)
    olga.selectbox(key="trial_rule").select("risk.total")
    olga.number_input(key="trial_rate").set_value(2.0)
    olga.number_input(key="trial_burst").set_value(2.0)
    olga.text_input(key="trial_reason").input("what would 2/s refuse?").run(timeout=60)
    assert "trial: rate 2/s, burst 2 counted in dry run, nothing refused" in _texts(olga)
    olga.button(key="trial_start").click().run(timeout=60)
    assert not olga.exception, olga.exception
    snap = _snapshot(console_pg)  # one switch: the new rate, in dry run
    assert snap.dry_run == {"risk.total"}
    assert snap.limits == {"risk.total": {"rate": 2.0, "burst": 2.0}}

    registry, t0 = CollectorRegistry(), time.time()
    guard = Guard(
        default_map(ORGS), base_rules=default_rules(ORGS), recorders=[CoreMetrics(registry)]
    )
    guard.apply(snap)
    sampler = Sampler(registry, TimeSeriesStore(console_pg), instance="api-1")
    sampler.sample_once(t0 - 1)
    for _ in range(10):  # 2 within the trial burst, 8 would be refused, none is
        assert guard.call("risk", lambda: "ok", caller="link.pay") == "ok"
    sampler.sample_once(t0)
    olga = _page("sre_switches", "olga")
    table = next(d.value for d in olga.dataframe if "would_block" in d.value.columns)
    row = table.set_index("rule").loc["risk.total"]
    assert (row["would_block"], row["counted_at"]) == (8, "rate 2/s, burst 2 (trial)")


def test_would_be_blocks_are_counted_per_rule_not_per_resource(console_pg):
    """Two rules of one resource in dry run at once: each row counts its own would-be
    blocks (the per-merchant rule refuses, the total rule does not)."""
    from prometheus_client import CollectorRegistry

    from collectors import CoreMetrics, Sampler, TimeSeriesStore
    from console.views.switch_plans import would_block
    from paycore.context import BizContext
    from stability.depmap_seed import default_map
    from stability.guard import Guard
    from stability.policy import default_rules
    from stability.switch_records import SwitchSnapshot

    total, per_merchant = "channel.SANDBOX_A.total", "channel.SANDBOX_A.per_merchant"
    snap = SwitchSnapshot(
        version=1,
        dry_run=frozenset({total, per_merchant}),
        limits={per_merchant: {"rate": 1.0, "burst": 1.0}},
    )
    registry, t0 = CollectorRegistry(), time.time()
    rules = default_rules(ORGS)
    guard = Guard(default_map(ORGS), base_rules=rules, recorders=[CoreMetrics(registry)])
    guard.apply(snap)
    store = TimeSeriesStore(console_pg)
    sampler = Sampler(registry, store, instance="api-1")
    sampler.sample_once(t0 - 1)
    labels = BizContext("M1", "goods", "physical", "SANDBOX_A").as_labels()
    for _ in range(6):  # one within the merchant's burst, five it would refuse
        guard.admit("channel.SANDBOX_A", caller="link.pay", labels=labels)
    sampler.sample_once(t0)
    rows = {r["rule"]: r for r in would_block(store, t0, rules, snap, window=300)}
    assert rows[per_merchant]["would_block"] == 5
    assert rows[total]["would_block"] == 0
