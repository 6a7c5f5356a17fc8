"""The grade audit's parts without a platform: the guard's fault seam on a real guard,
what the observer concludes from outcomes and answers, the verdicts, the fault order."""

from __future__ import annotations

from collections import Counter

import pytest

from simulator.grade_audit import impact_prediction, verdict
from simulator.grade_audit_faults import audit_order, fault_for, guard_has_hook
from simulator.grade_audit_observe import EdgeTally, Observer, Window, failed_answer
from simulator.grade_audit_report import contradiction_samples
from simulator.runner import DrillTargets
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.depmap_seed import default_map
from stability.errors import DependencyFailed
from stability.faults import FaultInjector
from stability.guard import Guard


def _map() -> DependencyMap:
    resources = [
        ResourceSpec("link.pay", "link", core_link=True),
        ResourceSpec("ledger.posting", "ledger"),
        ResourceSpec("database", "database"),
        ResourceSpec("risk", "service"),
    ]
    edges = [
        EdgeSpec("link.pay", "ledger.posting", "strong", 500),
        EdgeSpec("ledger.posting", "database", "strong", 200),
        EdgeSpec("link.pay", "risk", "weak", 100, fallback="allow"),
    ]
    return DependencyMap(resources, edges)


def test_an_injected_fault_fails_the_guarded_call_as_the_dependency_would():
    guard = Guard(_map())
    tally = EdgeTally()
    guard.recorders.append(tally)
    assert guard_has_hook(guard)
    injector = FaultInjector.attach(guard)
    assert FaultInjector.attach(guard) is injector  # one per guard
    assert guard.call("risk", lambda: "ok", caller="link.pay") == "ok"
    injector.fail(["risk", "ledger.posting"])
    # weak: the declared fallback is served; strong: fails fast naming the dependency
    assert guard.call("risk", lambda: "ok", caller="link.pay", fallback=lambda: "fb") == "fb"
    with pytest.raises(DependencyFailed) as failed:
        guard.call("ledger.posting", lambda: "ok", caller="link.pay")
    assert failed.value.resource == "ledger.posting"
    injector.heal(["risk"])
    assert injector.faulted == frozenset({"ledger.posting"})
    assert guard.call("risk", lambda: "ok", caller="link.pay") == "ok"
    injector.heal()
    assert guard.call("ledger.posting", lambda: 1, caller="link.pay") == 1
    counts = tally.snapshot()
    assert counts[("link.pay", "risk", "error")] == 1
    assert counts[("link.pay", "risk", "fallback")] == 1
    assert counts[("link.pay", "risk", "pass")] == 2
    assert counts[("link.pay", "ledger.posting", "error")] == 1


def _window(seconds: float, edges: dict, answers: dict | None = None) -> Window:
    return Window(seconds, Counter(edges), Counter(answers or {}))


def test_the_observer_judges_callers_from_outcomes_and_answers_beyond_the_baseline():
    dmap = _map()
    base = _window(10, {("link.pay", "risk", "error"): 1, ("link.pay", "risk", "fallback"): 1})
    # the database down: the posting's calls fail, the link's calls to the posting fail
    db = _window(
        5,
        {
            ("ledger.posting", "database", "error"): 4,
            ("link.pay", "ledger.posting", "error"): 4,
            ("link.pay", "risk", "pass"): 9,
        },
    )
    obs = Observer(dmap, "database", db, base)
    assert obs.effect("ledger.posting")[0] == "fails"
    effect, why = obs.effect("link.pay")
    assert effect == "fails" and "4 failed calls to ledger.posting" in why
    # risk down: fallbacks served, the link answers: it degrades, nothing fails
    risk = _window(5, {("link.pay", "risk", "error"): 6, ("link.pay", "risk", "fallback"): 6})
    assert Observer(dmap, "risk", risk, base).effect("link.pay")[0] == "degrades"
    # as many fallbacks as the baseline had: noise, no effect
    calm = _window(10, {("link.pay", "risk", "fallback"): 1, ("link.pay", "risk", "pass"): 5})
    assert Observer(dmap, "risk", calm, base).effect("link.pay") == (
        "none",
        "5 guarded calls on the blast path passed",
    )
    # no guarded call at all, but the API's answers named the dependency
    answers = {"pay:storage_unavailable": 3, "pay:insufficient_balance": 9}
    effect, why = Observer(dmap, "database", _window(5, {}, answers), base).effect("link.pay")
    assert (effect, why) == ("fails", "3 failed answers")


def test_a_weak_call_that_retried_and_fell_back_is_covered_by_its_one_fallback():
    resources = [
        ResourceSpec("link.pay", "link", core_link=True),
        ResourceSpec("coupon", "service"),
    ]
    edges = [EdgeSpec("link.pay", "coupon", "weak", 500, 1, fallback="pay without it")]
    dmap = DependencyMap(resources, edges)
    guard = Guard(dmap)
    tally = EdgeTally()
    guard.recorders.append(tally)
    FaultInjector.attach(guard).fail(["coupon"])
    for _ in range(3):  # each call: an error, its retry's error, one fallback
        assert guard.call("coupon", lambda: "ok", caller="link.pay", fallback=lambda: None) is None
    counts = tally.snapshot()
    assert counts[("link.pay", "coupon", "error")] == 6
    assert counts[("link.pay", "coupon", "fallback")] == 3
    fault = Window(5, counts, Counter())
    assert Observer(dmap, "coupon", fault, _window(10, {})).effect("link.pay")[0] == "degrades"
    # errors beyond what the fallbacks' attempts explain still fail the caller
    worse = _window(5, {**counts, ("link.pay", "coupon", "error"): 9})
    effect, why = Observer(dmap, "coupon", worse, _window(10, {})).effect("link.pay")
    assert effect == "fails" and "3 failed calls to coupon" in why


def test_answers_are_attributed_to_links_and_dependencies():
    assert failed_answer("pay:dependency_unavailable:channel.SANDBOX_A") == (
        "link.pay",
        "channel.SANDBOX_A",
    )
    assert failed_answer("create:storage_unavailable") == ("link.trade_create", "database")
    assert failed_answer("refund:transport") == ("link.refund", None)
    assert failed_answer("pay:http_502") == ("link.pay", None)
    assert failed_answer("pay:rate_limited") is None  # a limit, not a failure
    assert failed_answer("pay:trade_not_found") is None  # a client's mistake
    assert failed_answer("close:transport") is None  # no link answers a close


def test_verdicts_and_the_alert_samples():
    assert verdict("strong", "fails") == "confirmed"
    assert verdict("weak", "degrades") == "confirmed"
    assert verdict("weak", "fails") == "contradicted"
    assert verdict("strong", "degrades") == "contradicted"
    assert verdict("strong", "none") == verdict("weak", "none") == "unexercised"
    edges = [
        {"caller": "a", "callee": "b", "verdict": "contradicted"},
        {"caller": "a", "callee": "c", "verdict": "confirmed"},
        {"caller": "a", "callee": "d", "verdict": "unexercised"},  # keeps its last sample
    ]
    got = [(labels["callee"], value) for _, _, labels, value in contradiction_samples(edges, 1.0)]
    assert got == [("b", 1.0), ("c", 0.0)]


def test_every_dependency_is_faulted_once_the_database_last():
    dmap = default_map(("SANDBOX_A", "SANDBOX_B"))
    order = audit_order(dmap)
    called = {e.callee for e in dmap.edges if not dmap.resource(e.callee).core_link}
    assert sorted(order) == sorted(called) and len(order) == len(set(order))
    assert order[-2:] == ["redis", "database"] and order[0].startswith("channel.")
    assert audit_order(dmap, ("database", "risk")) == ["risk", "database"]
    with pytest.raises(ValueError, match="link.pay"):
        audit_order(dmap, ("link.pay",))
    assert impact_prediction(dmap, "risk")["link.pay"] == "degrades"
    assert impact_prediction(dmap, "database")["link.pay"] == "fails"


def test_a_dependency_without_a_way_to_fault_it_says_why():
    dmap = default_map(("SANDBOX_A",))
    guard, targets = Guard(dmap), DrillTargets()
    assert "sandbox" in str(fault_for("channel.SANDBOX_A", dmap, targets, guard, None))
    assert "fault proxy" in str(fault_for("database", dmap, targets, guard, None))
    assert "receivers" in str(fault_for("notification", dmap, targets, guard, None))
    fault = fault_for("risk", dmap, targets, guard, None)
    assert not isinstance(fault, str) and "guard fault hook" in fault.how
    fault.apply()
    assert guard.fault_injector.faulted == {"risk"}
    fault.undo()
    assert guard.fault_injector.faulted == frozenset()


def test_a_contradicted_edge_fires_the_alert_and_a_confirmation_resolves_it(db_url):
    """The samples the audit writes, read by the default rules through the alerts engine."""
    import sqlalchemy as sa

    from alerts import AlertEngine, default_rules
    from alerts.grade_audit import NAME
    from collectors.store import TimeSeriesStore
    from simulator.grade_audit_report import write_contradictions

    engine = sa.create_engine(db_url)
    alerts = AlertEngine(engine, TimeSeriesStore(engine), default_rules(("SANDBOX_A",)))

    def firing() -> set[tuple[str, str]]:
        return {
            (a.labels["caller"], a.labels["callee"])
            for a in alerts.active()
            if a.rule == NAME and a.state == "firing"
        }

    try:
        wrong = {"caller": "link.pay", "callee": "risk", "verdict": "contradicted"}
        right = {"caller": "link.pay", "callee": "database", "verdict": "confirmed"}
        assert write_contradictions(engine, [wrong, right]) == 2
        result = alerts.evaluate()
        assert NAME not in result.errors, result.errors
        assert firing() == {("link.pay", "risk")}
        write_contradictions(engine, [wrong | {"verdict": "confirmed"}])
        alerts.evaluate()
        assert firing() == set()
    finally:
        engine.dispose()


def test_the_traffic_aware_prediction_counts_the_other_pay_orgs():
    from types import SimpleNamespace

    from simulator.grade_audit_predict import baseline_traffic, traffic_prediction

    dmap = default_map(("SANDBOX_A", "SANDBOX_B"))
    base = _window(
        10,
        {
            ("link.pay", "channel.SANDBOX_A", "pass"): 20,
            ("link.pay", "channel.SANDBOX_B", "pass"): 30,
            ("link.pay", "channel.SANDBOX_B", "error"): 5,  # not traffic that went through
        },
    )
    shop = SimpleNamespace(merchant_id="M1", pay_orgs=("SANDBOX_A", "SANDBOX_B"))
    only_a = SimpleNamespace(merchant_id="M2", pay_orgs=("SANDBOX_A",))
    traffic = baseline_traffic(dmap, base, [shop, only_a])
    assert traffic.rates["link.pay"] == {"SANDBOX_A": 2.0, "SANDBOX_B": 3.0}
    got = traffic_prediction(dmap, "channel.SANDBOX_A", traffic)
    assert got["link.pay"]["effect"] == "partial"  # the structural query says "fails"
    assert impact_prediction(dmap, "channel.SANDBOX_A")["link.pay"] == "fails"
    assert "1/2 pay orgs down (SANDBOX_A); 2.0 payments/s" in got["link.pay"]["message"]
    assert "1 of them have another granted org" in got["link.pay"]["message"]
    assert traffic_prediction(dmap, "database", traffic)["link.pay"]["effect"] == "fails"
