"""The SLA report: availability and p99 latency against target, with error budgets.

Read from metrics through :class:`collectors.query.MetricsQuery` over ``window_s``
before ``now``. Every count is the counters' *increase* over the window
(:meth:`MetricsQuery.count`: the database store sums the increase of each sample against
the one before it, stitched from raw samples and rollups; Prometheus answers
``increase()``), rounded to whole requests. Nothing is a rate times the window.

What is good and what is bad comes from the SLO spec (:mod:`alerts.slo_spec`, the one
the alerts burn): each row uses its SLO's ``good_outcomes``/``bad_outcomes``
(:meth:`~alerts.slo_spec.SloSpec.outcomes`; a step or dependency without an SLO gets the
spec's default for its kind); every other outcome is *excluded*, neither good nor bad.

* core link steps (``paywatch_link_requests_total{step,outcome}``; shipped: good ``ok``
  and ``pending``, bad ``error`` and ``timeout``, a business refusal ``rejected``
  excluded). p99 comes from ``paywatch_link_latency_seconds``. The target is the spec's
  availability objective for the step, else the dependency map resource ``link.<step>``
  (or ``<step>``), else :data:`DEFAULT_SLO`.
* dependencies (``paywatch_guard_calls_total{resource,outcome}``, summed over callers,
  the counter the alerts read; shipped: good ``pass``, bad ``error``, ``timeout``,
  ``breaker_open`` and ``bulkhead_full``; a rate limit, a degradation, a fallback
  excluded). Target: the spec's objective for the resource, else its ``sla_target`` in
  the map.

``requests`` counts every outcome, ``total`` = good + bad (what the target is about),
``excluded`` the rest. Availability = good / total (None with no traffic). Error
budget: ``allowed_errors`` = (1 − SLO) · total; ``budget_left`` = 1 − bad / allowed,
the fraction of the budget still unspent (negative when overspent: −0.25 means the
budget is exhausted and a quarter more was spent); burn rate = (bad / total) / (1 − SLO)
(1.0 spends the budget exactly over the window). A 100 % target has no budget: any
error exhausts it (``budget_left`` −inf, burn inf).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alerts.slo_spec import GUARD_CALLS, LINK_REQUESTS, Outcomes, SloSpec, load_spec
from collectors.query import MetricsQuery

REQUESTS = LINK_REQUESTS
LATENCY = "paywatch_link_latency_seconds"
GUARD = GUARD_CALLS
DEFAULT_SLO = 0.999
DEFAULT_WINDOW_S = 30 * 86400.0
#: the report's windows: label -> seconds (1 h .. 90 d: the 1-hour rollups' retention)
WINDOWS = {
    "1h": 3600.0,
    "6h": 6 * 3600.0,
    "1d": 86400.0,
    "7d": 7 * 86400.0,
    "30d": 30 * 86400.0,
    "90d": 90 * 86400.0,
}
WINDOW_NAMES = {
    "1h": "1 hour",
    "6h": "6 hours",
    "1d": "1 day",
    "7d": "7 days",
    "30d": "30 days",
    "90d": "90 days",
}


@dataclass(frozen=True, slots=True)
class SlaRow:
    kind: str  # "link" | "dependency"
    name: str
    slo: float
    requests: int  # every outcome in the window
    total: int  # good + bad: what the target is about
    good: int
    bad: int
    excluded: int  # requests - total (business refusals, limits, fallbacks)
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


def spec_objectives() -> dict[str, float]:
    """The SLO spec's availability objectives by report name (``link.<step>``, dependency
    names): :func:`alerts.slo_spec.load_spec` (``$PAYWATCH_SLO_SPEC`` or the shipped one)."""
    return load_spec().objectives()


def _counts(
    query: MetricsQuery, metric: str, key: str, *, window: float, at: float
) -> dict[str, dict[str, int]]:
    """Requests per name and outcome: the counters' increase, in whole requests."""
    out: dict[str, dict[str, int]] = {}
    for s in query.count(metric, window=window, at=at, by=(key, "outcome")):
        name, outcome = s.labels.get(key, ""), s.labels.get("outcome", "")
        if not name or s.value is None or not math.isfinite(s.value):
            continue
        per = out.setdefault(name, {})
        per[outcome] = per.get(outcome, 0) + max(round(s.value), 0)
    return out


def _row(
    kind: str,
    name: str,
    slo: float,
    outcomes: dict[str, int],
    counted: Outcomes,
    p99: float | None,
) -> SlaRow:
    good_f, bad_f = counted.split(dict(outcomes))
    good, bad = int(good_f), int(bad_f)
    total = good + bad
    requests = sum(outcomes.values())
    allowed = max(1.0 - slo, 0.0) * total
    if total <= 0:
        return SlaRow(
            kind, name, slo, requests, 0, 0, 0, requests, None, p99, 0.0, None, None, None
        )
    availability = good / total
    if allowed > 0:
        budget_left = 1.0 - bad / allowed
        burn = (bad / total) / (1.0 - slo)
    else:  # a 100 % target: no budget to spend
        budget_left, burn = (1.0, 0.0) if bad == 0 else (-math.inf, math.inf)
    return SlaRow(
        kind,
        name,
        slo,
        requests,
        total,
        good,
        bad,
        requests - total,
        availability,
        p99,
        allowed,
        budget_left,
        burn,
        availability >= slo,
    )


def sla_report(
    query: MetricsQuery,
    dmap: Any = None,
    *,
    now: float,
    window_s: float = DEFAULT_WINDOW_S,
    steps: Iterable[str] | None = None,
    objectives: Mapping[str, float] | None = None,
    slo_spec: SloSpec | None = None,
) -> list[SlaRow]:
    """Rows for every core link step (all of ``steps``, default
    :data:`collectors.metrics.STEPS`, plus any seen) then every dependency (resources
    of ``dmap`` that are not core links, those of the spec, plus any seen in guard
    outcomes). ``objectives`` (default: :func:`spec_objectives`) win over the map; good
    and bad outcomes come from ``slo_spec`` (default: :func:`alerts.slo_spec.load_spec`)."""
    from collectors.metrics import STEPS

    defs = slo_spec or load_spec()
    spec = spec_objectives() if objectives is None else dict(objectives)
    targets = {**_targets(dmap), **spec}
    links = {r.name for r in dmap.resources if r.core_link} if dmap is not None else set()
    links |= {n for n in spec if n.startswith("link.")}
    step_counts = _counts(query, REQUESTS, "step", window=window_s, at=now)
    p99s = {
        s.labels.get("step", ""): s.value
        for s in query.quantile(0.99, LATENCY, window=window_s, at=now, by=("step",))
    }
    rows: list[SlaRow] = []
    for step in sorted(set(steps if steps is not None else STEPS) | set(step_counts)):
        slo = targets.get(f"link.{step}", targets.get(step, DEFAULT_SLO))
        counted = defs.outcomes(step=step)
        rows.append(_row("link", step, slo, step_counts.get(step, {}), counted, p99s.get(step)))
    dep_counts = _counts(query, GUARD, "resource", window=window_s, at=now)
    deps = {n for n in targets if n not in links} | set(dep_counts)
    for dep in sorted(deps):
        rows.append(
            _row(
                "dependency",
                dep,
                targets.get(dep, DEFAULT_SLO),
                dep_counts.get(dep, {}),
                defs.outcomes(resource=dep),
                None,
            )
        )
    return rows


def has_traffic(rows: Iterable[SlaRow]) -> bool:
    """Whether any row saw a request in the window (else the period has no data)."""
    return any(r.requests > 0 for r in rows)


# -- display ------------------------------------------------------------------------------------
def percent(x: float | None, digits: int = 3) -> str:
    """``0.99912`` -> ``"99.912 %"``; None -> ``"—"``."""
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x * 100:,.{digits}f} %"


def target_text(slo: float) -> str:
    """A target as people write it: ``0.999`` -> ``"99.9 %"``."""
    return f"{round(slo * 100, 6):g} %"


def status_text(row: SlaRow) -> str:
    """``met``, ``missed`` or ``no traffic``."""
    if row.met is None:
        return "no traffic"
    return "met" if row.met else "missed"


def budget_text(row: SlaRow) -> str:
    """What is left of the error budget: ``"62.5 % left"``; spent past zero: ``"exhausted
    by 12.0 %"`` (spent 112 % of it); ``"—"`` without traffic."""
    left = row.budget_left
    if left is None:
        return "—"
    if left == -math.inf:
        return "exhausted (a 100 % target has no budget)"
    if left < 0:
        return f"exhausted by {-left * 100:,.1f} %"
    return f"{left * 100:,.1f} % left"


def burn_text(row: SlaRow) -> str:
    """Burn rate as a multiple: ``"0.38×"`` (1× spends the budget exactly over the window)."""
    b = row.burn_rate
    if b is None:
        return "—"
    if not math.isfinite(b):
        return "∞"
    return f"{b:,.2f}×"


def p99_text(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "—"
    return f"{seconds * 1000:,.1f} ms"


def display_rows(rows: Iterable[SlaRow]) -> list[dict[str, Any]]:
    """The rows as the page shows them: integers for counts, percentages, met/missed."""
    return [
        {
            "kind": r.kind,
            "name": r.name,
            "status": status_text(r),
            "target": target_text(r.slo),
            "availability": percent(r.availability),
            "requests": r.requests,
            "good": r.good,
            "bad": r.bad,
            "excluded": r.excluded,
            "error budget": budget_text(r),
            "burn rate": burn_text(r),
            "p99": p99_text(r.p99_s),
        }
        for r in rows
    ]


def sla_csv(rows: Iterable[SlaRow]) -> str:
    """The rows as CSV (header always present): exact counts and fractions."""
    from dataclasses import fields

    from .funds import to_csv

    return to_csv(rows, [f.name for f in fields(SlaRow)])
