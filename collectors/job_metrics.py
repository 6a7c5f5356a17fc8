"""Metrics about paywatch's own background work: the worker's jobs and the alert engine.

* ``paywatch_job_runs_total{job,outcome}`` (``ok``/``error``), ``paywatch_job_duration_seconds``
  and ``paywatch_job_last_success_timestamp_seconds`` per job, with the job's schedule in
  ``paywatch_job_interval_seconds`` so a rule can say "no success for 3× its interval";
* ``paywatch_alert_rule_errors_total{rule}``: rule queries the alert engine could not run
  (a blind engine resolves nothing and pages nothing, so this is watched itself).

Everything lives on the registry passed in; nothing exists at import time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from .labels import BoundedLabel

__all__ = ["JOB_BUCKETS", "AlertEngineMetrics", "JobMetrics"]

#: 10 ms .. 10 min: jobs range from a 2 s posting fold to a day's reconciliation
JOB_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


class JobMetrics:
    """Per-job run counts, durations and last success on ``registry``.

    :meth:`wrap` returns the job callable that records itself. A job's last-success
    gauge starts at the time the job is wrapped (the worker's start), so a job that never
    succeeds goes stale from start-up instead of showing 0 (1970) or nothing at all.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
        max_jobs: int = 64,
    ) -> None:
        self.clock = clock
        self._job = BoundedLabel("job", max_jobs)
        self.runs = Counter(
            "paywatch_job_runs",
            "Worker job runs by outcome (ok: returned, error: raised)",
            ["job", "outcome"],
            registry=registry,
        )
        self.duration = Histogram(
            "paywatch_job_duration_seconds",
            "Worker job run duration",
            ["job"],
            buckets=JOB_BUCKETS,
            registry=registry,
        )
        self.last_success = Gauge(
            "paywatch_job_last_success_timestamp_seconds",
            "Unix time of the job's last successful run (its start-up time until the first)",
            ["job"],
            registry=registry,
        )
        self.interval = Gauge(
            "paywatch_job_interval_seconds",
            "The job's schedule: seconds between runs",
            ["job"],
            registry=registry,
        )

    def wrap(self, name: str, interval: float, fn: Callable[[], Any]) -> Callable[[], Any]:
        """``fn`` recording each run under ``job=name``; exceptions still propagate."""
        job = self._job(name)
        ok, error = self.runs.labels(job, "ok"), self.runs.labels(job, "error")
        duration, last = self.duration.labels(job), self.last_success.labels(job)
        self.interval.labels(job).set(interval)
        last.set(self.clock())

        def run() -> Any:
            t0 = time.perf_counter()
            try:
                result = fn()
            except BaseException:
                duration.observe(time.perf_counter() - t0)
                error.inc()
                raise
            duration.observe(time.perf_counter() - t0)
            ok.inc()
            last.set(self.clock())
            return result

        run.__name__ = f"job_{job}"
        return run


class AlertEngineMetrics:
    """The alert engine's own health: evaluations and the rule queries that failed."""

    def __init__(self, registry: CollectorRegistry, *, max_rules: int = 256) -> None:
        self._rule = BoundedLabel("rule", max_rules)
        self.evaluations = Counter(
            "paywatch_alert_evaluations",
            "Alert engine evaluation rounds",
            registry=registry,
        )
        self.rule_errors = Counter(
            "paywatch_alert_rule_errors",
            "Alert rules whose query failed in an evaluation round (the engine is blind to them)",
            ["rule"],
            registry=registry,
        )
        # the series exists before the first failure, so its rate is 0 and not "no data"
        self.rule_errors.labels("")
        #: rules that failed in the last finished round: read in-process, so the engine
        #: knows it is blind even when the metrics backend it would ask is what is down
        self.last_round_errors = 0
        self._round_errors = 0

    def evaluated(self) -> None:
        """One evaluation round ran."""
        self.evaluations.inc()
        self.last_round_errors, self._round_errors = self._round_errors, 0

    def rule_failed(self, rule: str) -> None:
        """The query of ``rule`` failed in this round."""
        self.rule_errors.labels(self._rule(rule)).inc()
        self._round_errors += 1
