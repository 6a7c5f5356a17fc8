"""Plans linked from where an operator meets an incident: the runbook's sections and the
default alerts name shipped plans; the charts draw a run's annotation; the shipped plans
follow the map's pay orgs; a breaker_open alert of a weak dependency proposes its plan."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from plan_service import ORGS, pg_db, plans  # noqa: F401 - fixtures

from alerts.defaults import default_rules
from alerts.model import render
from alerts.plan_proposals import firing_plans, propose_for_alerts
from console.views.linkcharts import link_chart
from console.views.runbook import plan_url, runbook_anchors_for, runbook_sections, section_plans
from stability.plan_seed import WEAK, default_plans


def test_every_shipped_plan_is_named_by_a_runbook_section_that_exists():
    sections = runbook_sections()
    for spec in default_plans(ORGS):
        anchors = runbook_anchors_for(spec["name"])
        assert anchors and all(a in sections for a in anchors), spec["name"]
    assert runbook_anchors_for("channel SANDBOX_A outage") == [
        "channel_down",
        "slo_channel_call_success_org",
    ]
    down = sections["channel_down"].text
    assert section_plans(down, {"pay_org": "SANDBOX_B"}) == ["channel SANDBOX_B outage"]
    assert runbook_anchors_for("no such plan") == []
    text = sections["breaker_open"].text
    assert section_plans(text, {"resource": "notification"}) == ["degrade notification"]
    assert section_plans(text, {}) == []  # a placeholder the labels cannot fill: no link
    assert plan_url("degrade ledger.hot_account") == "/sre_switches?plan=degrade+ledger.hot_account"


def test_the_default_alerts_name_the_shipped_plans():
    shipped = {p["name"] for p in default_plans(ORGS)}
    rules = {r.name: r for r in default_rules(ORGS)}
    for org in ORGS:
        plan = rules[f"slo_channel_call_success_{org.lower()}"].annotations["plan"]
        assert plan == f"channel {org} outage" and plan in shipped
    down = rules["channel_down"].annotations["plan"]
    for org in ORGS:
        assert render(down, {"pay_org": org}, 1.0) == f"channel {org} outage"
    breaker = rules["breaker_open"].annotations["plan"]
    for resource in WEAK:
        assert render(breaker, {"resource": resource}, 1.0) in shipped
    assert render(breaker, {"resource": "channel.SANDBOX_A"}, 1.0) not in shipped
    assert "plan" not in rules["trial_balance_broken"].annotations  # no plan answers it


def test_the_shipped_plans_follow_the_pay_orgs_of_the_map(plans):
    with plans.engine.begin() as conn:
        conn.execute(sa.text("delete from stability_plans"))
    assert plans.seed_shipped() == 6 and plans.seed_shipped() == 0
    assert {p.name for p in plans.plans()} >= {f"channel {o} outage" for o in ORGS}


def test_a_breaker_open_alert_of_a_weak_dependency_proposes_its_plan_only(plans):
    rule = next(r for r in default_rules(ORGS) if r.name == "breaker_open")
    now = time.time()
    with plans.engine.begin() as conn:
        for fp, res in (("f1", "notification"), ("f2", "channel.SANDBOX_A")):
            notes = {k: render(v, {"resource": res}, 1.0) for k, v in rule.annotations.items()}
            conn.execute(
                sa.text(
                    "insert into alert_states (fingerprint, rule, labels, annotations, "
                    "severity, state, last_eval) values (:f, 'breaker_open', :l, :a, 'page', "
                    "'firing', :t)"
                ),
                {"f": fp, "l": json.dumps({"resource": res}), "a": json.dumps(notes), "t": now},
            )
    assert firing_plans(plans.engine) == {
        "degrade notification": "breaker_open",
        "degrade channel.SANDBOX_A": "breaker_open",
    }
    (run,) = propose_for_alerts(plans, plans.engine)
    assert (run.plan, run.actor, run.trigger) == (
        "degrade notification",
        "system",
        "alert:breaker_open",
    )
    assert propose_for_alerts(plans, plans.engine) == []  # not twice


def test_the_link_chart_shades_a_plans_span_with_its_text():
    now = datetime.now(UTC)
    notes = [
        {"at": now - timedelta(minutes=10), "ends_at": now - timedelta(minutes=5), "text": "A"},
        {"at": now - timedelta(minutes=2), "ends_at": now + timedelta(hours=1), "text": "B"},
    ]
    fig = link_chart({"rate": [(now.timestamp(), 1.0)]}, title="pay", notes=notes)
    shapes = [(s.x0, s.x1) for s in fig.layout.shapes]
    assert shapes[0] == (notes[0]["at"], notes[0]["ends_at"])
    assert shapes[1][0] == notes[1]["at"] and shapes[1][1] <= datetime.now(UTC)  # not beyond now
    assert [a.text for a in fig.layout.annotations] == ["A", "B"]
    assert link_chart({"rate": []}).layout.shapes == ()


def test_a_weak_dependencys_burn_rate_page_proposes_its_degrade_plan(plans):
    """Real guard outcomes (notification POSTs failing), sampled into the store, page
    ``slo_dependency_success_notification``; the firing alert proposes its plan."""
    from prometheus_client import CollectorRegistry

    from alerts import AlertEngine
    from collectors import CoreMetrics, Sampler, TimeSeriesStore
    from stability.depmap_seed import default_map
    from stability.guard import Guard

    registry, t0 = CollectorRegistry(), time.time()
    guard = Guard(default_map(ORGS), recorders=[CoreMetrics(registry)])
    store = TimeSeriesStore(plans.engine)
    sampler = Sampler(registry, store, instance="worker-1")
    sampler.sample_once(t0 - 60)

    calls = iter(range(10**6))

    def flaky_endpoint() -> None:
        if next(calls) % 3 == 0:  # a third of the POSTs fail: under the breaker's ratio
            raise ConnectionError("merchant endpoint down")

    for _ in range(150):  # each failed POST falls back (delivered later)
        guard.call("notification", flaky_endpoint, caller="link.notify", fallback=lambda: None)
    assert guard.stats.count("notification", "error") == 50
    assert guard.breaker("notification").state == "closed"
    sampler.sample_once(t0)
    rules = [r for r in default_rules(ORGS) if r.name.startswith("slo_dependency_success_")]
    assert {r.name for r in rules} == {
        "slo_dependency_success_notification",
        "slo_dependency_success_ledger_hot_account",
        "slo_dependency_success_risk",
        "slo_dependency_success_coupon",
    }
    AlertEngine(plans.engine, store, rules).evaluate(t0)
    assert firing_plans(plans.engine) == {
        "degrade notification": "slo_dependency_success_notification"
    }
    (run,) = propose_for_alerts(plans, plans.engine)
    assert (run.plan, run.actor, run.trigger) == (
        "degrade notification",
        "system",
        "alert:slo_dependency_success_notification",
    )
