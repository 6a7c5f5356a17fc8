"""Meta-monitoring rules: is paywatch itself watching? (``docs/runbook.md`` has each one).

* ``target_down``: a process that exported metrics in the last 15 minutes has exported
  none for 2 (its ``paywatch_build_info`` heartbeat; the same expression in Prometheus,
  where a dead target's series go stale);
* ``business_snapshot_stale``: the business gauges cannot be read (their rules are blind);
  its ``_absent`` twin: no process exports them at all (no worker);
* ``alert_engine_blind``: the alert engine's rule queries keep failing;
* ``job_failing``: half or more of a worker job's runs fail;
* ``job_not_succeeding``: no success of a job for 3× its interval (at least 5 minutes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from collectors.query import MetricsQuery, Series

from .base import Rule
from .rules import ThresholdRule
from .spec import QuerySpec

__all__ = [
    "HEARTBEAT",
    "JOB_STALE_FACTOR",
    "JOB_STALE_MIN_S",
    "meta_rules",
    "with_engine_self_check",
]

HEARTBEAT = "paywatch_build_info"
RUNS = "paywatch_job_runs_total"
LAST_SUCCESS = "paywatch_job_last_success_timestamp_seconds"
INTERVAL = "paywatch_job_interval_seconds"
RULE_ERRORS = "paywatch_alert_rule_errors_total"
SNAPSHOT_OK = "paywatch_business_snapshot_ok"
#: a target is down when seen within SEEN_S but not within GONE_S
SEEN_S, GONE_S = 900.0, 120.0
#: a job is stale after max(JOB_STALE_FACTOR × its interval, JOB_STALE_MIN_S) without success
JOB_STALE_FACTOR, JOB_STALE_MIN_S = 3.0, 300.0
#: how long a dead worker's last job successes are still looked at
JOB_LOOKBACK_S = 3600.0
Notes = Callable[..., dict[str, str]]


def _targets_down(query: MetricsQuery, at: float) -> list[Series]:
    """Instances with a heartbeat in the last SEEN_S but none in the last GONE_S; the
    value is how many seconds of the window the instance was still seen for."""
    seen = query.latest(HEARTBEAT, at=at, by=("instance",), max_age=SEEN_S, agg="max")
    alive = query.latest(HEARTBEAT, at=at, by=("instance",), max_age=GONE_S, agg="max")
    live = {s.labels.get("instance") for s in alive if s.value is not None}
    return [
        Series({"instance": s.labels.get("instance", "")}, 1.0)
        for s in seen
        if s.value is not None and s.labels.get("instance") not in live
    ]


def _stale_jobs(query: MetricsQuery, at: float) -> list[Series]:
    """Per job: seconds since its newest success (any worker) when past its limit."""
    last = query.latest(LAST_SUCCESS, at=at, by=("job",), max_age=JOB_LOOKBACK_S, agg="max")
    every = query.latest(INTERVAL, at=at, by=("job",), max_age=JOB_LOOKBACK_S, agg="max")
    interval = {s.labels.get("job"): s.value for s in every if s.value is not None}
    out = []
    for s in last:
        job = s.labels.get("job", "")
        if s.value is None or job not in interval:
            continue
        age = at - s.value
        if age > max(JOB_STALE_FACTOR * (interval[job] or 0.0), JOB_STALE_MIN_S):
            out.append(Series({"job": job}, age))
    return out


def _window(seconds: float) -> str:
    return f"{int(seconds // 60)}m"


_TARGET_DOWN_PROMQL = (
    f"max by (instance) (max_over_time({HEARTBEAT}[{_window(SEEN_S)}])) "
    f"unless max by (instance) (max_over_time({HEARTBEAT}[{_window(GONE_S)}]))"
)
_JOB_STALE_PROMQL = (
    f"(time() - max by (job) (max_over_time({LAST_SUCCESS}[{_window(JOB_LOOKBACK_S)}])))"
    f" > on(job) clamp_min({JOB_STALE_FACTOR:g} * max by (job) "
    f"(max_over_time({INTERVAL}[{_window(JOB_LOOKBACK_S)}])), {JOB_STALE_MIN_S:g})"
)


def with_engine_self_check(rules: Sequence[Rule], metrics: Any) -> list[Rule]:
    """``rules`` with ``alert_engine_blind`` reading ``metrics.last_round_errors`` (the
    engine's own count of failed rules in its last round) instead of the metrics backend:
    when that backend is down, every query fails, this one too. Its export is unchanged."""
    out: list[Rule] = []
    for rule in rules:
        if isinstance(rule, ThresholdRule) and rule.name == "alert_engine_blind":

            def failed(query: MetricsQuery, at: float) -> list[Series]:
                return [Series({}, float(metrics.last_round_errors))]

            rule = replace(rule, query=failed, promql=rule.expr())
        out.append(rule)
    return out


def meta_rules(notes: Notes) -> list[Rule]:
    """The meta-monitoring rules; ``notes(anchor, summary)`` builds their annotations
    (summary and runbook link, as the other default rules have)."""
    return [
        ThresholdRule(
            "target_down",
            _targets_down,
            ">",
            0,
            severity="page",
            promql=_TARGET_DOWN_PROMQL,
            annotations=notes(
                "target_down",
                "{{ $labels.instance }} has exported no metrics for 2 minutes",
            ),
        ),
        ThresholdRule(
            "business_snapshot_stale",
            QuerySpec("latest", SNAPSHOT_OK, by=("instance",), window=300, agg="min"),
            "<",
            1,
            for_s=300,
            severity="page",
            absent_for_s=1800,
            annotations=notes(
                "business_snapshot_stale",
                "{{ $labels.instance }} cannot read the business gauges (backlogs, trial "
                "balance) from the database",
            ),
        ),
        ThresholdRule(
            "alert_engine_blind",
            QuerySpec("rate", RULE_ERRORS, window=300),
            ">",
            0,
            for_s=300,
            severity="page",
            annotations=notes(
                "alert_engine_blind",
                "alert rules keep failing to query ({{ $value }}/s): their alerts can "
                "neither fire nor resolve",
            ),
        ),
        ThresholdRule(
            "job_failing",
            QuerySpec("ratio", RUNS, {"outcome": "error"}, by=("job",), window=900, match_den={}),
            ">=",
            0.5,
            for_s=600,
            severity="ticket",
            annotations=notes(
                "job_failing",
                "worker job {{ $labels.job }} fails in {{ $value }} of its runs",
            ),
        ),
        ThresholdRule(
            "job_not_succeeding",
            _stale_jobs,
            ">",
            0,
            severity="ticket",
            promql=_JOB_STALE_PROMQL,
            annotations=notes(
                "job_not_succeeding",
                "worker job {{ $labels.job }} has not succeeded for {{ $value }}s "
                "(3x its interval)",
            ),
        ),
    ]
