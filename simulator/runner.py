"""Running a drill: its timeline of faults over simulated traffic, then the report.

:func:`run_drill` checks the drill can apply to the backends at hand (a Redis drill
without Redis, or a database drill on SQLite or without a proxy in front of the
platform's connections, is reported ``not_applicable`` instead of pretending), runs
the traffic, applies each step on time, always undoes the faults, lets compensation
and the follow-ups settle, runs reconciliation, audits the client-side ledger and
writes the report to the database and ``<var_dir>/drills/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from backends.errors import HttpStatusError, HttpUnavailable
from backends.http import JsonHttp

from .drills import Drill, Step
from .evidence import platform_evidence
from .faultproxy import FaultProxy
from .report import checks, now_iso, save_report, write_json
from .sandbox_config import knob_request
from .simulator import Simulator

log = logging.getLogger(__name__)


class SandboxAdmin:
    """The sandbox channel's ``/admin/knobs`` API."""

    def __init__(self, sandbox_url: str, token: str) -> None:
        self.url, self.token = sandbox_url.rstrip("/"), token

    def knobs(self) -> dict[str, dict[str, Any]]:
        with JsonHttp(timeout=5.0, maxsize=1) as http:
            resp = http.get(f"{self.url}/admin/knobs", headers={"X-Sandbox-Admin": self.token})
        return dict(resp.raise_for_status().json())

    def put(self, org: str, changes: dict[str, Any]) -> dict[str, Any]:
        url, headers, body = knob_request(self.url, org, changes, self.token)
        with JsonHttp(timeout=5.0, maxsize=1) as http:
            resp = http.put(url, headers=headers, json=body)
        return dict(resp.raise_for_status().json())


@dataclass
class DrillTargets:
    """What a drill can act on, and where the evidence is."""

    sandbox: SandboxAdmin | None = None
    proxies: dict[str, FaultProxy] = field(default_factory=dict)  #: redis / database
    engine: Engine | None = None  #: the platform's database, read directly
    prometheus_url: str | None = None
    var_dir: str = "var"
    core: Any = None  #: the platform's PayCore when in this process (runs reconciliation)


def not_applicable(drill: Drill, targets: DrillTargets) -> str | None:
    """Why ``drill`` cannot run against ``targets`` (None when it can)."""
    if drill.needs == "sandbox":
        if targets.sandbox is None:
            return "no sandbox channel admin API (sandbox URL and admin token) to inject faults"
        try:
            targets.sandbox.knobs()
        except (HttpUnavailable, HttpStatusError) as exc:
            return f"the sandbox admin API did not answer ({type(exc).__name__})"
        return None
    if drill.needs not in targets.proxies:
        what = {
            "redis": "no Redis is configured (PAYWATCH_REDIS_URL unset: in-process locks "
            "and limits have nothing to take down)",
            "database": "the database is not reached over the network (SQLite) or not "
            "through a fault proxy of this process",
        }[drill.needs]
        return f"{what}; run with --embedded on PostgreSQL/Redis to drill it"
    return None


class _Faults:
    """Applies steps and remembers how to undo them."""

    def __init__(self, targets: DrillTargets) -> None:
        self.targets = targets
        self.undo: dict[tuple[str, str], Callable[[], Any]] = {}

    def apply(self, step: Step) -> Any:
        t = self.targets
        if step.kind == "knobs":
            assert t.sandbox is not None
            sandbox = t.sandbox
            if ("knobs", step.target) not in self.undo:
                before = sandbox.knobs()[step.target]
                self.undo[("knobs", step.target)] = lambda: sandbox.put(step.target, before)
            return sandbox.put(step.target, dict(step.params))
        proxy = t.proxies[step.target]
        self.undo.setdefault(("proxy", step.target), proxy.reset)
        knobs = proxy.set(**{k: step.params[k] for k in ("latency_ms", "down") if k in step.params})
        return {"latency_ms": knobs.latency_ms, "down": knobs.down}

    def restore(self) -> list[str]:
        errors = []
        for (kind, target), fn in self.undo.items():
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 - keep undoing the others
                errors.append(f"{kind} {target}: {type(exc).__name__}")
        return errors


def run_drill(
    drill: Drill,
    simulator: Simulator,
    targets: DrillTargets,
    *,
    target: str = "",
    time_factor: float = 1.0,
    settle_s: float = 90.0,
    stop: Callable[[], bool] = lambda: False,
) -> dict[str, Any]:
    """Run ``drill`` (already scaled and aimed) with ``simulator``'s traffic; returns the
    report, also saved when ``targets.engine`` is set and written under ``var_dir``."""
    report: dict[str, Any] = {
        "drill": drill.as_dict(),
        "target": target,
        "time_factor": time_factor,
        "started_at": now_iso(),
        "steps": [],
        "reason": "",
    }
    reason = not_applicable(drill, targets)
    if reason is not None:
        report.update(status="not_applicable", reason=reason, finished_at=now_iso())
        return _persist(report, targets)
    start_wall = time.time()
    simulator.start()
    faults = _Faults(targets)
    t0 = time.monotonic()
    try:
        for step in sorted(drill.steps, key=lambda s: s.at_s):
            _sleep_until(t0 + step.at_s, stop)
            entry: dict[str, Any] = {
                "at_s": round(time.monotonic() - t0, 1),
                "kind": step.kind,
                "target": step.target,
                "params": dict(step.params),
                "note": step.note,
            }
            try:
                entry["result"] = faults.apply(step)
            except Exception as exc:  # noqa: BLE001 - recorded; the drill goes on
                entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
            report["steps"].append(entry)
            log.info(
                "drill %s t+%.1fs: %s %s %s",
                drill.name,
                entry["at_s"],
                step.kind,
                step.target,
                step.params,
            )
        _sleep_until(t0 + drill.duration_s, stop)
    finally:
        simulator.stop_traffic()
        undo_errors = faults.restore()
    report["undo_errors"] = undo_errors
    report["still_pending"] = simulator.settle(settle_s)
    report["traffic"] = simulator.stats.as_dict()
    report["audit"] = simulator.audit().as_dict()
    if simulator.receiver is not None:
        report["receivers"] = dict(simulator.receiver.stats.__dict__)
    if targets.engine is not None:
        report["platform"] = platform_evidence(
            targets.engine,
            start_wall,
            time.time(),
            prometheus_url=targets.prometheus_url,
            core=targets.core,
        )
    report["checks"] = checks(report)
    report["status"] = "passed" if all(report["checks"].values()) else "failed"
    report["finished_at"] = now_iso()
    return _persist(report, targets)


def _sleep_until(deadline: float, stop: Callable[[], bool]) -> None:
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def _persist(report: dict[str, Any], targets: DrillTargets) -> dict[str, Any]:
    path = write_json(report, targets.var_dir)
    report["json_path"] = str(path)
    if targets.engine is not None:
        try:
            report["id"] = save_report(targets.engine, report, str(path))
        except Exception as exc:  # noqa: BLE001 - the JSON file still holds it
            log.warning("could not store the drill report: %s", type(exc).__name__)
    return report
