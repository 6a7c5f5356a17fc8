"""The SLA report: availability and p99 latency against target, with error budgets.

Read from metrics through :class:`collectors.query.MetricsQuery` over ``window_s``
before ``now``:

* core link steps (``paywatch_link_requests_total{step,outcome}``): *good* is
  ``ok`` and ``pending`` (accepted, result later: not a failure of the step); *bad* is
  ``error`` and ``timeout``; ``rejected`` (business refusals, 4xx) is excluded from
  both. p99 comes from ``paywatch_link_latency_seconds``. The target is the dependency
  map resource ``link.<step>`` (or ``<step>``), else :data:`DEFAULT_SLO`.
* dependencies (``paywatch_guard_outcomes_total{resource,outcome}``): *good* is
  ``pass``, *bad* is ``error``, ``timeout`` and ``breaker_open``; other guard outcomes
  (blocked by a limit, degraded, fallback) are neither. Target: the resource's
  ``sla_target``.

Availability = good / (good + bad) (None with no traffic). Error budget: ``allowed``
= (1 − SLO) · total requests; ``budget_left`` = 1 − bad / allowed (negative when
overspent); burn rate = (bad / total) / (1 − SLO) (1.0 spends the budget exactly over
the window).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from collectors.query import MetricsQuery

REQUESTS = "paywatch_link_requests_total"
LATENCY = "paywatch_link_latency_seconds"
GUARD = "paywatch_guard_outcomes_total"
STEP_GOOD = frozenset({"ok", "pending"})
STEP_BAD = frozenset({"error", "timeout"})
DEP_GOOD = frozenset({"pass"})
DEP_BAD = frozenset({"error", "timeout", "breaker_open"})
DEFAULT_SLO = 0.999
DEFAULT_WINDOW_S = 30 * 86400.0


@dataclass(frozen=True, slots=True)
class SlaRow:
    kind: str  # "link" | "dependency"
    name: str
    slo: float
    total: float  # good + bad requests in the window
    good: float
    bad: float
    availability: float | None
    p99_s: float | None
    allowed_errors: float
    budget_left: float | None  # fraction of the error budget left; None without traffic
    burn_rate: float | None
    met: bool | None  # availability >= slo; None without traffic


def _targets(dmap: Any) -> dict[str, float]:
    if dmap is None:
        return {}
    return {r.name: float(r.sla_target) for r in dmap.resources}


def _counts(
    query: MetricsQuery, metric: str, key: str, *, window: float, at: float
) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for s in query.rate(metric, window=window, at=at, by=(key, "outcome")):
        name, outcome = s.labels.get(key, ""), s.labels.get("outcome", "")
        if not name or s.value is None:
            continue
        per = out.setdefault(name, {})
        per[outcome] = per.get(outcome, 0.0) + s.value * window
    return out


def _row(kind: str, name: str, slo: float, outcomes: dict[str, float],
         good_set: Iterable[str], bad_set: Iterable[str], p99: float | None) -> SlaRow:  # fmt: skip
    good = sum(outcomes.get(o, 0.0) for o in good_set)
    bad = sum(outcomes.get(o, 0.0) for o in bad_set)
    total = good + bad
    allowed = (1.0 - slo) * total
    if total <= 0:
        return SlaRow(kind, name, slo, 0.0, 0.0, 0.0, None, p99, 0.0, None, None, None)
    availability = good / total
    budget_left = 1.0 - bad / allowed
    burn = (bad / total) / (1.0 - slo)
    return SlaRow(kind, name, slo, total, good, bad, availability, p99, allowed, budget_left,
                  burn, availability >= slo)  # fmt: skip


def sla_report(
    query: MetricsQuery,
    dmap: Any = None,
    *,
    now: float,
    window_s: float = DEFAULT_WINDOW_S,
    steps: Iterable[str] | None = None,
) -> list[SlaRow]:
    """Rows for every core link step (all of ``steps``, default
    :data:`collectors.metrics.STEPS`, plus any seen) then every dependency (resources
    of ``dmap`` that are not core links, plus any seen in guard outcomes)."""
    from collectors.metrics import STEPS

    targets = _targets(dmap)
    links = {r.name for r in dmap.resources if r.core_link} if dmap is not None else set()
    step_counts = _counts(query, REQUESTS, "step", window=window_s, at=now)
    p99s = {
        s.labels.get("step", ""): s.value
        for s in query.quantile(0.99, LATENCY, window=window_s, at=now, by=("step",))
    }
    rows: list[SlaRow] = []
    for step in sorted(set(steps if steps is not None else STEPS) | set(step_counts)):
        slo = targets.get(f"link.{step}", targets.get(step, DEFAULT_SLO))
        rows.append(_row("link", step, slo, step_counts.get(step, {}), STEP_GOOD, STEP_BAD,
                         p99s.get(step)))  # fmt: skip
    dep_counts = _counts(query, GUARD, "resource", window=window_s, at=now)
    deps = {n for n in targets if n not in links} | set(dep_counts)
    for dep in sorted(deps):
        rows.append(_row("dependency", dep, targets.get(dep, DEFAULT_SLO),
                         dep_counts.get(dep, {}), DEP_GOOD, DEP_BAD, None))  # fmt: skip
    return rows


def sla_csv(rows: Iterable[SlaRow]) -> str:
    """The rows as CSV (header always present)."""
    from dataclasses import fields

    from .funds import to_csv

    return to_csv(rows, [f.name for f in fields(SlaRow)])
