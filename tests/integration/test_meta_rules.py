"""Meta-monitoring rules through the real alert engine and the database time-series store
(SQLite and PostgreSQL): real registries sampled into the store on a simulated clock, so
each rule fires on its condition and not otherwise.

* target_down: a process that stops exporting, not one that keeps exporting;
* business_snapshot_stale and its _absent twin: a failing snapshot; no worker at all;
* alert_engine_blind: the engine's own failed rule queries;
* job_failing / job_not_succeeding: a worker job that starts raising;
* slo_pay_success_absent: fires with only the zero-initialised series, not with pays.
"""

from __future__ import annotations

import contextlib

import pytest
from alert_series import T0, db, run, transitions  # noqa: F401 - db: fixture
from conftest import Clock
from prometheus_client import CollectorRegistry

from alerts import AlertEngine, ThresholdRule, default_rules
from alerts.defaults import _notes
from alerts.meta_rules import meta_rules
from collectors import BusinessSnapshot, CoreMetrics, Sampler, TimeSeriesStore
from collectors.build_info import register_process_metrics
from collectors.job_metrics import AlertEngineMetrics, JobMetrics

STEP = 30.0  # sampling and evaluation step of the simulation


def rule(name: str):
    return next(r for r in meta_rules(_notes) if r.name == name)


class Sim:
    """A store on a simulated clock and processes (registries) sampled into it."""

    def __init__(self, engine) -> None:
        self.clock = Clock(T0)
        self.store = TimeSeriesStore(engine, clock=self.clock)
        self.samplers: dict[str, Sampler] = {}

    def process(self, instance: str) -> CollectorRegistry:
        reg = CollectorRegistry()
        self.samplers[instance] = Sampler(reg, self.store, instance=instance, interval=STEP)
        return reg

    def until(self, end: float, *, eng: AlertEngine, alive=None, each=None) -> None:
        """Step to ``end``: ``each(t)``, sample the live processes, evaluate."""
        while self.clock.now + STEP <= end + 1e-9:
            self.clock.now += STEP
            t = self.clock.now
            if each is not None:
                each(t)
            for name, sampler in self.samplers.items():
                if alive is None or name in alive:
                    sampler.sample_once(t)
            eng.evaluate(now=t)


def firing(eng: AlertEngine) -> set[tuple[str, str]]:
    out = set()
    for a in eng.active():
        if a.state == "firing":
            key = a.labels.get("instance") or a.labels.get("job") or ""
            out.add((a.labels["alertname"], key))
    return out


def test_target_down_fires_for_the_process_that_stopped_exporting_only(db) -> None:
    sim = Sim(db)
    register_process_metrics(sim.process("api:node-1"))
    register_process_metrics(sim.process("worker:node-2"))
    eng = AlertEngine(db, sim.store, [rule("target_down")])
    sim.until(T0 + 600, eng=eng)
    assert firing(eng) == set()  # both alive
    sim.until(T0 + 690, eng=eng, alive={"worker:node-2"})  # api stops at T0+600
    assert firing(eng) == set()  # 90 s: not yet (2 minutes)
    sim.until(T0 + 780, eng=eng, alive={"worker:node-2"})
    assert firing(eng) == {("target_down", "api:node-1")}
    # it comes back under the same (stable) instance label: resolved at once
    sim.until(T0 + 840, eng=eng)
    assert firing(eng) == set()
    assert [s for _, s, _ in transitions(eng, "target_down")] == ["firing", "resolved"]


def test_business_snapshot_stale_fires_while_the_snapshot_fails(db) -> None:
    sim = Sim(db)
    state = {"fail": False}

    def snapshot() -> BusinessSnapshot:
        if state["fail"]:
            raise ConnectionError("database down")
        return BusinessSnapshot(trial_balance_ok=True)

    CoreMetrics(sim.process("worker:node-1"), business=snapshot, business_ttl=0.0)
    eng = AlertEngine(db, sim.store, [rule("business_snapshot_stale")])
    sim.until(T0 + 600, eng=eng)
    assert firing(eng) == set()
    state["fail"] = True
    sim.until(T0 + 840, eng=eng)
    assert firing(eng) == set()  # 4 minutes: pending (for 5m)
    sim.until(T0 + 960, eng=eng)
    assert firing(eng) == {("business_snapshot_stale", "worker:node-1")}
    # the trial balance is not served while the snapshot fails: no stale "1"
    assert sim.store.latest("paywatch_trial_balance_ok", at=T0 + 960, max_age=60) == []
    state["fail"] = False
    sim.until(T0 + 1020, eng=eng)
    assert firing(eng) == set()


def test_business_snapshot_absent_fires_when_no_process_exports_it(db) -> None:
    sim = Sim(db)
    CoreMetrics(sim.process("worker:node-1"), business=BusinessSnapshot, business_ttl=0.0)
    eng = AlertEngine(db, sim.store, [rule("business_snapshot_stale")])
    sim.until(T0 + 300, eng=eng)
    sim.until(T0 + 300 + 1770, eng=eng, alive=set())  # the worker is gone
    assert firing(eng) == set()
    sim.until(T0 + 300 + 1830, eng=eng, alive=set())
    assert firing(eng) == {("business_snapshot_stale_absent", "")}


def test_alert_engine_blind_counts_failed_rule_queries_and_fires(db) -> None:
    sim = Sim(db)
    broken = {"on": False}

    def query(q, at):
        if broken["on"]:
            raise ConnectionError("metrics backend down")
        return []

    metrics = AlertEngineMetrics(sim.process("worker:node-1"))
    probe = ThresholdRule("probe", query, ">", 0, promql="vector(0) > 0")
    eng = AlertEngine(db, sim.store, [probe, rule("alert_engine_blind")], metrics=metrics)
    sim.until(T0 + 600, eng=eng)
    assert firing(eng) == set()
    assert metrics.evaluations._value.get() == 600 / STEP
    broken["on"] = True
    sim.until(T0 + 600 + 240, eng=eng)
    assert firing(eng) == set()  # pending: for 5 minutes
    sim.until(T0 + 600 + 390, eng=eng)
    assert firing(eng) == {("alert_engine_blind", "")}
    assert metrics.rule_errors.labels("probe")._value.get() == 390 / STEP
    broken["on"] = False
    sim.until(T0 + 600 + 390 + 330, eng=eng)  # the 5-minute rate drops to 0
    assert firing(eng) == set()


def test_job_failing_and_not_succeeding_fire_for_the_broken_job_only(db) -> None:
    sim = Sim(db)
    jobs = JobMetrics(sim.process("worker:node-1"), clock=sim.clock)
    broken = {"on": False}

    def flaky() -> None:
        if broken["on"]:
            raise RuntimeError("boom")

    runs = {"flaky": jobs.wrap("flaky", 60.0, flaky), "fine": jobs.wrap("fine", 60.0, lambda: 1)}

    def each(t: float) -> None:
        if int(t - T0) % 60 == 0:
            for fn in runs.values():
                with contextlib.suppress(RuntimeError):
                    fn()

    eng = AlertEngine(db, sim.store, [rule("job_failing"), rule("job_not_succeeding")])
    sim.until(T0 + 900, eng=eng, each=each)
    assert firing(eng) == set()
    broken["on"] = True
    # last success at T0+900: stale after max(3 x 60 s, 300 s)
    sim.until(T0 + 900 + 270, eng=eng, each=each)
    assert firing(eng) == set()
    sim.until(T0 + 900 + 330, eng=eng, each=each)
    assert firing(eng) == {("job_not_succeeding", "flaky")}
    # half the runs of the last 15 min failed at T0+900+450; then held for 10 minutes
    sim.until(T0 + 900 + 1020, eng=eng, each=each)
    assert ("job_failing", "flaky") not in firing(eng)
    sim.until(T0 + 900 + 1110, eng=eng, each=each)
    assert firing(eng) == {("job_not_succeeding", "flaky"), ("job_failing", "flaky")}
    broken["on"] = False
    sim.until(T0 + 900 + 1170, eng=eng, each=each)
    assert ("job_not_succeeding", "flaky") not in firing(eng)


@pytest.mark.parametrize("pays", [False, True])
def test_slo_pay_success_absent_can_fire_on_zero_initialised_series(db, pays) -> None:
    sim = Sim(db)
    metrics = CoreMetrics(sim.process("api:node-1"))
    pay = next(r for r in default_rules() if r.name == "slo_pay_success")
    assert pay.absent_for_s == 1800

    def each(t: float) -> None:
        if pays:
            metrics.observe("pay", "ok", "", "SANDBOX_A", seconds=0.01)

    eng = AlertEngine(db, sim.store, [pay])
    sim.until(T0 + 1800 + 2 * STEP, eng=eng, each=each)
    absent = {a.labels["alertname"] for a in eng.active()} & {"slo_pay_success_absent"}
    assert absent == (set() if pays else {"slo_pay_success_absent"})


def test_the_engine_knows_it_is_blind_when_its_metrics_backend_is_down(db) -> None:
    """Prometheus (the query backend) unreachable: every rule query fails, yet
    alert_engine_blind fires, from the engine's own count of failed rules."""
    from conftest import free_port

    from alerts.meta_rules import with_engine_self_check
    from collectors import PrometheusQuery

    metrics = AlertEngineMetrics(CollectorRegistry())
    rules = with_engine_self_check(default_rules(["SANDBOX_A"]), metrics)
    down = PrometheusQuery(f"http://127.0.0.1:{free_port()}", timeout=2.0)
    eng = AlertEngine(db, down, rules, metrics=metrics)
    try:
        run(eng, T0, T0 + 240, 60)
        assert firing(eng) == set()  # pending for 5 minutes
        run(eng, T0 + 300, T0 + 360, 60)
        assert firing(eng) == {("alert_engine_blind", "")}
        assert metrics.last_round_errors == len(rules) - 1  # all but the self-check
    finally:
        down.close()
    exported = next(r for r in rules if r.name == "alert_engine_blind").to_prometheus()
    assert "paywatch_alert_rule_errors_total" in exported[0]["expr"]  # export unchanged
