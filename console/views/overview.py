"""On-call overview: core-link numbers and series, channel health, guard fallbacks and
backlogs. The alert rows (:mod:`console.views.alerts`), runbook sections
(:mod:`console.views.runbook`) and charts (:mod:`console.views.linkcharts`) are importable
from here too."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.query import MetricsQuery
from console.views.alerts import (  # noqa: F401 - re-exported
    active_alerts,
    age,
    alert_markdown,
    alert_resource,
    alert_table,
    clock_time,
)
from console.views.health import (  # noqa: F401 - re-exported
    BAD,
    FAILED_OUTCOMES,
    FALLBACK_OUTCOMES,
    GOOD_OUTCOMES,
    GUARD,
    HEALTH_COLOURS,
    LATENCY,
    OK,
    REQUESTS,
    STEPS,
    UNKNOWN,
    WARN,
    health,
)
from console.views.linkcharts import link_chart, sparkline  # noqa: F401 - re-exported
from console.views.runbook import (  # noqa: F401 - re-exported
    RUNBOOK,
    RunbookSection,
    heading_anchor,
    runbook_section,
    runbook_sections,
)


def _by(rows: Iterable[Any], label: str) -> dict[str, float | None]:
    return {r.labels.get(label, ""): r.value for r in rows}


def _success(
    query: MetricsQuery, now: float, window: float, label: str, match: dict[str, str] | None = None
) -> dict[str, float | None]:
    """good / (good + bad) per ``label`` value, as the steps' SLOs count (a business
    refusal is neither); None without traffic or with refusals only."""
    shares = {
        kind: _shares(query, now, window, label, match, outcomes)
        for kind, outcomes in (("good", GOOD_OUTCOMES), ("bad", FAILED_OUTCOMES))
    }
    result: dict[str, float | None] = {}
    for key in shares["good"].keys() | shares["bad"].keys():
        good, bad = shares["good"].get(key), shares["bad"].get(key)
        judged = (good or 0.0) + (bad or 0.0)
        result[key] = (good or 0.0) / judged if judged > 0 else None
    return result


def _shares(
    query: MetricsQuery,
    now: float,
    window: float,
    label: str,
    match: dict[str, str] | None,
    outcomes: Iterable[str],
) -> dict[str, float | None]:
    """The share of all requests with one of ``outcomes``, per ``label`` value (None
    without traffic)."""
    share: dict[str, float | None] = {}
    for outcome in outcomes:
        rows = query.ratio(
            REQUESTS,
            REQUESTS,
            window=window,
            at=now,
            match_num={**(match or {}), "outcome": outcome},
            match_den=match,
            by=(label,),
        )
        for r in rows:
            key = r.labels.get(label, "")
            if r.value is None:
                share.setdefault(key, None)
            else:
                share[key] = (share.get(key) or 0.0) + r.value
    return share


def link_stats(
    query: MetricsQuery,
    now: float,
    *,
    window: float = 300.0,
    steps: Iterable[str] = STEPS,
    pay_org: str | None = None,
) -> list[dict[str, Any]]:
    """Per core-link step: requests per second, success ratio, p99 seconds and health
    (only the calls through ``pay_org`` when given)."""
    match = {"pay_org": pay_org} if pay_org else None
    rates = _by(query.rate(REQUESTS, window=window, at=now, match=match, by=("step",)), "step")
    success = _success(query, now, window, "step", match)
    p99 = _by(
        query.quantile(0.99, LATENCY, window=window, at=now, match=match, by=("step",)), "step"
    )
    out = []
    for step in steps:
        s = success.get(step)
        out.append(
            {
                "step": step,
                "rate": rates.get(step),
                "success": s,
                "p99_s": p99.get(step),
                "health": health(s),
            }
        )
    return out


def channel_health(
    query: MetricsQuery, now: float, pay_orgs: Iterable[str], *, window: float = 300.0
) -> list[dict[str, Any]]:
    """Per pay org: channel-call rate, success ratio, p99 and health."""
    match = {"step": "channel_call"}
    rates = _by(
        query.rate(REQUESTS, window=window, at=now, match=match, by=("pay_org",)), "pay_org"
    )
    success = _success(query, now, window, "pay_org", match)
    p99 = _by(
        query.quantile(0.99, LATENCY, window=window, at=now, match=match, by=("pay_org",)),
        "pay_org",
    )
    orgs = list(dict.fromkeys([*pay_orgs, *(k for k in rates if k)]))
    return [
        {
            "pay_org": o,
            "rate": rates.get(o),
            "success": success.get(o),
            "p99_s": p99.get(o),
            "health": health(success.get(o)),
        }
        for o in orgs
    ]


def guard_fallbacks(
    query: MetricsQuery, now: float, *, window: float = 300.0
) -> list[dict[str, Any]]:
    """Per resource: degraded and fallback calls in the window (the counters' increase)."""
    table: dict[str, dict[str, Any]] = {}
    for outcome in FALLBACK_OUTCOMES:
        for r in query.count(
            GUARD, window=window, at=now, match={"outcome": outcome}, by=("resource",)
        ):
            row = table.setdefault(r.labels.get("resource", ""), {"degraded": 0.0, "fallback": 0.0})
            row[outcome] = round(r.value or 0.0, 1)
    return [{"resource": k, **v} for k, v in sorted(table.items())]


def overview(
    query: MetricsQuery, now: float, *, pay_orgs: Iterable[str] = (), window: float = 300.0
) -> dict[str, Any]:
    """Everything metric-based the overview page shows, at ``now``."""
    return {
        "at": now,
        "window": window,
        "links": link_stats(query, now, window=window),
        "channels": channel_health(query, now, pay_orgs, window=window),
        "guard": guard_fallbacks(query, now, window=window),
    }


def link_rates(
    query: MetricsQuery,
    *,
    start: float,
    end: float,
    points: int = 30,
    steps: Iterable[str] = STEPS,
) -> dict[str, list[tuple[float, Any]]]:
    """Request-rate series of every step from one range query grouped by step (the
    overview's sparklines): what ``link_series(step)["rate"]`` gives, one fetch for all."""
    res = max((end - start) / max(points - 1, 1), 1.0)
    window = max(res, 60.0)
    data = query.range(
        "rate", REQUESTS, start=start, end=end, step=res, by=("step",), window=window
    )
    out: dict[str, list[tuple[float, Any]]] = {step: [] for step in steps}
    for key, series in data.items():
        step = dict(key).get("step", "")
        if step in out:
            out[step] = sorted(series)
    return out


def link_series(
    query: MetricsQuery,
    step: str,
    *,
    start: float,
    end: float,
    points: int = 60,
    pay_org: str | None = None,
) -> dict[str, list[tuple[float, Any]]]:
    """Chart series of one step: request rate, failure rate (error+timeout) and p99."""
    res = max((end - start) / max(points - 1, 1), 1.0)
    window = max(res, 60.0)
    match = {"step": step, **({"pay_org": pay_org} if pay_org else {})}

    def one(kind: str, metric: str, m: dict[str, str]) -> list[tuple[float, Any]]:
        data = query.range(kind, metric, start=start, end=end, step=res, match=m, window=window)
        if not data:
            return []
        merged: dict[float, float | None] = {}
        for series in data.values():
            for t, v in series:
                if v is None:
                    merged.setdefault(t, None)
                else:
                    merged[t] = (merged.get(t) or 0.0) + v
        return sorted(merged.items())

    failed: dict[float, float | None] = {}
    for outcome in FAILED_OUTCOMES:
        for t, v in one("rate", REQUESTS, {**match, "outcome": outcome}):
            failed[t] = v if failed.get(t) is None else (failed[t] or 0.0) + (v or 0.0)
    return {
        "rate": one("rate", REQUESTS, match),
        "failed": sorted(failed.items()),
        "p99": one("p99", LATENCY, match),
    }


def backlogs(engine: Engine) -> dict[str, Any]:
    """Compensation tasks by status, pending notifications, unsummarised postings."""
    from paycore.db.schema import CompensationTask, Notification, PendingPosting

    with engine.connect() as conn:
        comp = dict(
            conn.execute(
                sa.select(CompensationTask.status, sa.func.count()).group_by(
                    CompensationTask.status
                )
            ).all()
        )
        notify = conn.execute(
            sa.select(sa.func.count())
            .select_from(Notification)
            .where(Notification.status == "pending")
        ).scalar_one()
        postings = conn.execute(
            sa.select(sa.func.count())
            .select_from(PendingPosting)
            .where(PendingPosting.summary_id.is_(None))
        ).scalar_one()
    statuses = ("pending", "running", "failed", "manual")
    return {
        "compensation": {s: int(comp.get(s, 0)) for s in statuses},
        "notifications_pending": int(notify),
        "pending_postings": int(postings),
    }
