"""The grade audit (``paywatch drill grade-audit``): every dependency of the map faulted in
turn under simulated traffic, every edge's declared grade held against what happened.

Timeline: a baseline window with no fault, then per dependency (:func:`audit_order`) a
fault window of ``seconds_per_fault`` (:mod:`.grade_audit_faults` says how each is
faulted), the fault undone, and a wait for the guard's breakers to close again. In each
fault window :class:`~.grade_audit_observe.Observer` judges every caller from the guard's
outcomes per edge and the API's answers; per edge ``caller -> faulted``:

* **confirmed**: a strong edge's caller failed, a weak edge's caller degraded;
* **contradicted**: the caller did something else (a weak edge failed its caller, a strong
  edge only degraded it);
* **unexercised**: no effect was seen (no call on the edge met the fault);
* **not_applicable**: the dependency cannot be faulted here (the reason is given).

Beside it, the impact query's predictions for every link: the map's (``predict``) and the
traffic-aware one fed with the baseline's traffic (:mod:`.grade_audit_predict`). The
report is a drill report (``drill.name`` ``grade-audit``), stored like the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stability.depmap import DependencyMap, EdgeSpec
from stability.impact_traffic import RecentTraffic

from .evidence import platform_evidence
from .grade_audit_faults import Fault, audit_order, fault_for
from .grade_audit_observe import EdgeTally, Observer, Window, window
from .grade_audit_predict import baseline_traffic, impact_prediction, traffic_prediction
from .grade_audit_probe import LinkProbe
from .grade_audit_report import write_contradictions
from .report import checks, now_iso, save_report, write_json
from .runner import DrillTargets

log = logging.getLogger(__name__)
NAME = "grade-audit"
VERDICTS = ("confirmed", "contradicted", "unexercised", "not_applicable")
Predict = Callable[[DependencyMap, str], Mapping[str, str]]
Job = tuple[str, Callable[[], Any]]


@dataclass(frozen=True)
class AuditConfig:
    """The audit's timeline; ``seconds_per_fault`` scales it (60 s is full scale)."""

    seconds_per_fault: float = 60.0
    baseline_s: float | None = None  #: default: one fault window
    recover_s: float | None = None  #: longest wait for breakers to close; default 2 windows
    only: tuple[str, ...] = ()  #: the dependencies to fault (default: every one)
    settle_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.seconds_per_fault > 0:
            raise ValueError("seconds_per_fault must be positive")


def verdict(grade: str, observed: str) -> str:
    """confirmed / contradicted / unexercised for an edge of ``grade`` given the caller's
    observed effect."""
    expected = "fails" if grade == "strong" else "degrades"
    if observed == expected:
        return "confirmed"
    return "unexercised" if observed == "none" else "contradicted"


class _Audit:
    """One run: the platform's guard, the traffic, the fault targets."""

    def __init__(
        self,
        guard: Any,
        simulator: Any,
        targets: DrillTargets,
        config: AuditConfig,
        jobs: Sequence[Job],
        predict: Predict,
        probe: bool,
    ) -> None:
        self.guard, self.sim, self.targets, self.config = guard, simulator, targets, config
        self.jobs, self.predict = jobs, predict
        self.dmap: DependencyMap = guard.map  # the grades the guard enforces now
        self.tally = EdgeTally()
        self.links = [r.name for r in self.dmap.resources if r.core_link]
        self.edges: list[dict[str, Any]] = []
        self.traffic = RecentTraffic()  #: the baseline's, once measured
        self.orgs = [r.name.split(".", 1)[1] for r in self.dmap.resources if r.kind == "channel"]
        self.probe = LinkProbe(simulator.config.api_url, simulator.merchants) if probe else None

    def reading(self) -> tuple[Counter[tuple[str, str, str]], dict[str, int]]:
        answers = Counter(self.sim.stats.as_dict()["refusals"])
        if self.probe is not None:
            answers.update(self.probe.counts())
        return self.tally.snapshot(), dict(answers)

    def observe(
        self, seconds: float, apply: Callable[[], Any] | None = None, jobs: list[Any] | None = None
    ) -> Window:
        """Counter increases over ``seconds`` from ``apply()`` on, with the link probes
        fired at 30 % and 65 % of it and ``jobs`` (when a list) run at half time."""
        before, t0 = self.reading(), time.monotonic()
        if apply is not None:
            apply()
        timed: list[tuple[float, Callable[[], Any]]] = []
        if self.probe is not None:
            timed += [(seconds * f, self.fire_probes) for f in (0.3, 0.65)]
        if jobs is not None:
            timed.append((seconds * 0.5, lambda: self.run_jobs(jobs)))
        timers = [threading.Timer(at, fn) for at, fn in timed]
        for t in timers:
            t.daemon = True
            t.start()
        _sleep_until(t0 + seconds)
        for t in timers:
            t.join(timeout=max(5.0, seconds))
        return window(before, self.reading(), time.monotonic() - t0)

    def fire_probes(self) -> None:
        for org in self.orgs:
            try:
                self.probe.fire(org)  # type: ignore[union-attr]
            except Exception as exc:  # noqa: BLE001 - a probe that cannot even ask is noted
                log.warning("grade audit probe via %s: %s", org, type(exc).__name__)

    def run_jobs(self, out: list[dict[str, Any]]) -> None:
        """Each job once, now (their guarded calls meet the fault)."""
        for name, fn in self.jobs:
            try:
                fn()
                out.append({"job": name, "ok": True})
            except Exception as exc:  # noqa: BLE001 - the guard's outcomes are the evidence
                out.append({"job": name, "ok": False, "error": type(exc).__name__})

    def one(self, resource: str, base: Window) -> dict[str, Any]:
        entry: dict[str, Any] = {"resource": resource}
        edges = [e for e in self.dmap.edges if e.callee == resource]
        lead_in = self.probe.pay if self.probe is not None else None
        hold_s = 2.0 * self.config.seconds_per_fault
        fault = fault_for(resource, self.dmap, self.targets, self.guard, self.sim, lead_in, hold_s)
        if isinstance(fault, str):
            entry.update(status="not_applicable", reason=fault)
            self.edges += [_row(e, "not_applicable", fault) for e in edges]
            return entry
        entry.update(how=fault.how, status="applied")
        jobs: list[dict[str, Any]] = []
        w = self._faulted(fault, entry, jobs)
        entry.update(seconds=round(w.seconds, 1), jobs=jobs)
        obs = Observer(self.dmap, resource, w, base)
        predicted = self.predict(self.dmap, resource)
        in_traffic = traffic_prediction(self.dmap, resource, self.traffic)
        entry["impact_in_traffic"] = [v["message"] for v in in_traffic.values()]
        entry["links"] = {
            link: dict(zip(("observed", "evidence"), obs.effect(link), strict=True))
            | {
                "predicted": predicted.get(link, "none"),
                "predicted_in_traffic": in_traffic.get(link, {}).get("effect", "none"),
            }
            for link in self.links
        }
        for e in edges:
            observed, evidence = obs.effect(e.caller)
            row = _row(e, verdict(e.grade, observed), evidence)
            row.update(
                observed=observed,
                predicted=predicted.get(e.caller, "none"),
                predicted_in_traffic=in_traffic.get(e.caller, {}).get("effect", "none"),
                calls=w.calls(e.caller, resource),
            )
            self.edges.append(row)
        entry["recovered_after_s"], entry["still_open"] = self._recover()
        return entry

    def _faulted(self, fault: Fault, entry: dict[str, Any], jobs: list[dict[str, Any]]) -> Window:
        def apply() -> None:
            try:
                fault.apply()
            except Exception as exc:  # noqa: BLE001 - reported; the window still runs
                entry["error"] = f"{type(exc).__name__}: {exc}"[:300]

        try:
            return self.observe(self.config.seconds_per_fault, apply, jobs)
        finally:
            try:
                fault.undo()
            except Exception as exc:  # noqa: BLE001 - keep going; the report says so
                entry["undo_error"] = f"{type(exc).__name__}: {exc}"[:300]

    def _recover(self) -> tuple[float, list[str]]:
        """Wait (bounded) until no breaker is open or half open; what is still open."""
        limit = self.config.recover_s
        limit = 2 * self.config.seconds_per_fault if limit is None else limit
        t0 = time.monotonic()
        while True:
            tripped = sorted(
                n for n, b in self.guard.breakers().items() if b.state in ("open", "half_open")
            )
            if not tripped or time.monotonic() - t0 >= limit:
                return round(time.monotonic() - t0, 1), tripped
            time.sleep(0.2)


def _row(e: EdgeSpec, v: str, why: str) -> dict[str, Any]:
    return {
        "caller": e.caller,
        "callee": e.callee,
        "grade": e.grade,
        "fallback": e.fallback,
        "expected": "fails" if e.grade == "strong" else "degrades",
        "observed": "",
        "predicted": "",
        "verdict": v,
        "why": why,
        "calls": {},
    }


def _sleep_until(deadline: float) -> None:
    while time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def run_grade_audit(
    guard: Any,
    simulator: Any,
    targets: DrillTargets,
    config: AuditConfig | None = None,
    *,
    jobs: Sequence[Job] = (),
    predict: Predict = impact_prediction,
    probe: bool = True,
) -> dict[str, Any]:
    """Run the audit against the platform behind ``guard`` (in this process) with
    ``simulator``'s traffic; returns the report, stored when ``targets.engine`` is set.

    ``jobs`` run once in the middle of every fault window (e.g. the active query), so the
    jobs' edges meet each fault; ``probe`` adds the audit's own calls on every link
    (:class:`~.grade_audit_probe.LinkProbe`)."""
    config = config or AuditConfig()
    run = _Audit(guard, simulator, targets, config, jobs, predict, probe)
    order = audit_order(run.dmap, config.only)
    report: dict[str, Any] = {
        "drill": {
            "name": NAME,
            "summary": f"{len(order)} dependencies faulted in turn, every edge's grade judged",
            "needs": "sandbox",
            "duration_s": config.seconds_per_fault * (len(order) + 1),
            "steps": [],
        },
        "target": ", ".join(config.only) or "every dependency",
        "time_factor": config.seconds_per_fault / 60.0,
        "started_at": now_iso(),
        "steps": [],
        "reason": "",
    }
    faults: list[dict[str, Any]] = []
    start_wall = time.time()
    guard.recorders.append(run.tally)
    simulator.start()
    try:
        if run.probe is not None:
            run.probe.prepare(run.orgs)
        _sleep_until(time.monotonic() + min(2.0, config.seconds_per_fault / 2))
        base = run.observe(config.baseline_s or config.seconds_per_fault)
        run.traffic = baseline_traffic(run.dmap, base, simulator.merchants)
        for resource in order:
            log.info("grade audit: faulting %s", resource)
            faults.append(run.one(resource, base))
    finally:
        simulator.stop_traffic()
        guard.recorders.remove(run.tally)
        if run.probe is not None:
            run.probe.close()
    return _finish(report, run, faults, base, start_wall)


def _finish(
    report: dict[str, Any],
    run: _Audit,
    faults: list[dict[str, Any]],
    base: Window,
    start_wall: float,
) -> dict[str, Any]:
    sim, targets = run.sim, run.targets
    report["still_pending"] = sim.settle(run.config.settle_s)
    report["traffic"] = sim.stats.as_dict()
    report["audit"] = sim.audit().as_dict()
    counts = Counter(e["verdict"] for e in run.edges)
    report["grade_audit"] = {
        "seconds_per_fault": run.config.seconds_per_fault,
        "baseline": {"seconds": round(base.seconds, 1), "answers": dict(base.answers)},
        "faults": faults,
        "edges": run.edges,
        "verdicts": {v: counts.get(v, 0) for v in VERDICTS},
    }
    report["steps"] = [
        {"kind": "fault", "target": f["resource"], "params": {"how": f.get("how", "")}}
        | ({"error": f["error"]} if "error" in f else {})
        for f in faults
    ]
    if targets.engine is not None:
        report["platform"] = platform_evidence(
            targets.engine,
            start_wall,
            time.time(),
            prometheus_url=targets.prometheus_url,
            recon=False,
            core=targets.core,
        )
    report["checks"] = checks(report) | {"no_grade_contradicted": counts["contradicted"] == 0}
    report["status"] = "passed" if all(report["checks"].values()) else "failed"
    report["finished_at"] = now_iso()
    report["json_path"] = str(write_json(report, targets.var_dir))
    if targets.engine is not None:
        report["id"] = save_report(targets.engine, report, report["json_path"])
        write_contradictions(targets.engine, run.edges)
    return report
