"""The grade audit at CI scale on a real platform: PostgreSQL and Redis behind the fault
proxies, the sandbox channel over HTTP, the API and the worker on threads, Poisson
merchant traffic. Every dependency of the seeded map is faulted in turn for a few
seconds, and every edge's verdict is asserted; a deliberately wrong grade comes out
contradicted and raises ``grade_contradicted`` through the alerts engine.
"""

from __future__ import annotations

import json
import time

import pytest

from alerts import AlertEngine, default_rules
from alerts.grade_audit import NAME as ALERT
from collectors.store import TimeSeriesStore
from paycore.db.engine import create_engine_from_url
from runtime.drill_cli import audit_jobs, audit_simulator
from runtime.drill_speed import fast_jobs, scaled_rule
from runtime.embedded import EmbeddedOptions, EmbeddedPlatform
from runtime.settings import Settings
from simulator.grade_audit import AuditConfig, run_grade_audit
from simulator.grade_audit_report import summary_lines
from simulator.report import get_report, list_reports
from stability.depmap import EdgeSpec
from stability.depmap_seed import default_map
from stability.depmap_store import DependencyMapStore

pytestmark = pytest.mark.redis
SECONDS_PER_FAULT = 6.0
FACTOR = SECONDS_PER_FAULT / 60.0


def _platform(pg_url: str, redis_url: str, tmp_path) -> tuple[Settings, EmbeddedPlatform]:
    settings = Settings(
        database_url=pg_url,
        redis_url=redis_url,
        var_dir=str(tmp_path / "var"),
        notify_secret_value="grade-audit-secret",
    )
    opts = EmbeddedOptions(jobs=fast_jobs(FACTOR), sample_interval_s=1.0)
    return settings, EmbeddedPlatform(settings, opts).start()


def _audit(settings: Settings, stack: EmbeddedPlatform, config: AuditConfig, seed: int) -> dict:
    sim = audit_simulator(settings, stack, 6.0, seed)
    try:
        return run_grade_audit(
            stack.platform.stability.guard,
            sim,
            stack.targets(settings),
            config,
            jobs=audit_jobs(stack.platform, FACTOR),
        )
    finally:
        sim.stop()


ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
#: edges that may come out unexercised (never contradicted), and why; every other edge of
#: the seeded map must come out confirmed
MAY_BE_UNEXERCISED: dict[tuple[str, str], str] = {
    **{
        ("job.compensation", f"channel.{org}"): "compensation calls a channel only when one "
        "of its tasks falls due inside the fault's window"
        for org in ORGS
    },
    ("ledger.posting", "database"): "with the database down the links fail at their own "
    "first query, before a posting starts",
    ("ledger.hot_account", "database"): "as ledger.posting -> database",
    ("link.callback", "database"): "a callback lands inside the database's fault window only "
    "for a channel send made in the ~50 ms before it (the sandbox's callback delay): with the "
    "database down no pay reaches a channel, so whether one lands is luck of the arrivals",
    ("link.refund", "coupon"): "a refund calls the coupon service only for a trade paid "
    "with a coupon (a few per cent of the traffic) that is refunded inside the fault's window",
    ("job.compensation", "coupon"): "compensation gives a coupon back only when a failed "
    "coupon pay's task falls due inside the fault's window",
}


def _verdicts(report: dict) -> dict[tuple[str, str], str]:
    return {(e["caller"], e["callee"]): e["verdict"] for e in report["grade_audit"]["edges"]}


def test_grade_audit_judges_every_edge_of_the_seeded_map(pg_url, redis_url, tmp_path):
    settings, stack = _platform(pg_url, redis_url, tmp_path)
    try:
        t0 = time.monotonic()
        report = _audit(settings, stack, AuditConfig(SECONDS_PER_FAULT, settle_s=60), seed=21)
        took = time.monotonic() - t0
        dmap = stack.platform.stability.guard.map
    finally:
        stack.stop()
    print("\n".join(summary_lines(report)), f"\ntook {took:.0f}s")
    got = _verdicts(report)
    summary = json.dumps({f"{c} -> {r}": v for (c, r), v in got.items()}, indent=1)
    # every edge of the map is judged, once, in about a minute and a half
    assert set(got) == {(e.caller, e.callee) for e in dmap.edges}, summary
    assert sum(report["grade_audit"]["verdicts"].values()) == len(dmap.edges)
    assert took < 240, took
    # every dependency was faulted (none left out as not applicable on PostgreSQL + Redis)
    assert [f["status"] for f in report["grade_audit"]["faults"]] == ["applied"] * len(
        report["grade_audit"]["faults"]
    )
    for edge, verdict in got.items():
        if edge in MAY_BE_UNEXERCISED:
            assert verdict in ("confirmed", "unexercised"), (edge, summary)
        else:
            assert verdict == "confirmed", (edge, summary)
    # the traffic kept its money straight through ten outages
    assert (report["audit"]["lost"], report["audit"]["doubled"]) == (0, 0), report["audit"]
    assert report["status"] == "passed" and report["checks"]["no_grade_contradicted"]
    engine = create_engine_from_url(pg_url)
    try:
        [row] = list_reports(engine)
        stored = get_report(engine, row["id"])
    finally:
        engine.dispose()
    assert row["name"] == "grade-audit" and stored is not None and _verdicts(stored) == got


def _regrade_weak(pg_url: str, caller: str, callee: str) -> None:
    """Store the seeded map with ``caller -> callee`` graded weak (a wrong grade)."""
    engine = create_engine_from_url(pg_url)
    try:
        store = DependencyMapStore(engine)
        dmap = default_map(Settings().pay_orgs, redis_lock=True)
        edge = dmap.edge(caller, callee)
        assert edge is not None and edge.grade == "strong"
        wrong = EdgeSpec(caller, callee, "weak", edge.timeout_ms, fallback="route elsewhere")
        store.replace(dmap.with_edge(wrong))
    finally:
        engine.dispose()


def _firing(engine, rules: list, name: str) -> set[tuple[str, str]]:
    """The edges ``name`` fires for (what an engine with ``rules`` lists as active)."""
    alerts = AlertEngine(engine, TimeSeriesStore(engine), rules).active()
    return {
        (a.labels["caller"], a.labels["callee"])
        for a in alerts
        if a.rule == name and a.state == "firing"
    }


def test_a_wrong_grade_is_contradicted_and_raises_the_alert(pg_url, redis_url, tmp_path):
    """``link.pay -> channel.SANDBOX_A`` re-graded weak: failing the channel fails the
    pay link all the same, so the audit contradicts the grade, the platform's own alert
    evaluation (at drill speed) fires ``grade_contradicted`` for that edge, and so do
    the default rules."""
    edge = ("link.pay", "channel.SANDBOX_A")
    _regrade_weak(pg_url, *edge)
    settings, stack = _platform(pg_url, redis_url, tmp_path)
    try:
        assert stack.platform.stability.guard.map.grade(*edge) == "weak"
        config = AuditConfig(SECONDS_PER_FAULT, only=("channel.SANDBOX_A",), settle_s=30)
        report = _audit(settings, stack, config, seed=22)
        engine = stack.targets(settings).engine
        rules = default_rules(settings.pay_orgs)
        AlertEngine(engine, TimeSeriesStore(engine), rules).evaluate()
        firing = _firing(engine, rules, ALERT)
        fast_rules = [scaled_rule(r, FACTOR) for r in rules]
        deadline = time.monotonic() + 90  # the worker's evaluation, every 2 s when not busy
        while not _firing(engine, fast_rules, f"{ALERT}_fast") and time.monotonic() < deadline:
            time.sleep(0.5)
        fast = _firing(engine, fast_rules, f"{ALERT}_fast")
        [row] = list_reports(engine)
        stored = get_report(engine, row["id"])
    finally:
        stack.stop()
    print("\n".join(summary_lines(report)))
    got = _verdicts(report)
    assert got[edge] == "contradicted", report["grade_audit"]["edges"]
    assert report["status"] == "failed" and not report["checks"]["no_grade_contradicted"]
    row_ = next(e for e in report["grade_audit"]["edges"] if (e["caller"], e["callee"]) == edge)
    assert (row_["grade"], row_["expected"], row_["observed"]) == ("weak", "degrades", "fails")
    # the other edges to the channel keep their (right) strong grade
    assert got[("link.refund", "channel.SANDBOX_A")] == "confirmed"
    # stored, and the alert fires for that edge only: the platform's evaluator and the rules
    assert stored is not None and _verdicts(stored)[edge] == "contradicted"
    assert (row["name"], row["status"]) == ("grade-audit", "failed")
    assert firing == {edge} and fast == {edge}, (firing, fast)
