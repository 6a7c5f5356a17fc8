"""On-call overview: core-link numbers, channel health, alerts, backlogs, guard fallbacks."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import plotly.graph_objects as go
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from alerts.schema import AlertState
from collectors.query import MetricsQuery

STEPS = (
    "trade_create",
    "pay",
    "callback",
    "refund",
    "channel_call",
    "ledger_posting",
    "notification",
)
REQUESTS = "paywatch_link_requests_total"
LATENCY = "paywatch_link_latency_seconds"
GUARD = "paywatch_guard_outcomes_total"
FAILED_OUTCOMES = ("error", "timeout")
FALLBACK_OUTCOMES = ("degraded", "fallback")
OK, WARN, BAD, UNKNOWN = "ok", "warn", "bad", "unknown"
HEALTH_COLOURS = {OK: "#2ca02c", WARN: "#ff7f0e", BAD: "#d62728", UNKNOWN: "#7f7f7f"}


def health(success: float | None, *, warn: float = 0.99, bad: float = 0.95) -> str:
    """ok / warn / bad from a success ratio; unknown without traffic."""
    if success is None:
        return UNKNOWN
    return OK if success >= warn else WARN if success >= bad else BAD


def _by(rows: Iterable[Any], label: str) -> dict[str, float | None]:
    return {r.labels.get(label, ""): r.value for r in rows}


def _success(
    query: MetricsQuery, now: float, window: float, label: str, match: dict[str, str] | None = None
) -> dict[str, float | None]:
    """1 - (error + timeout) / all, per ``label`` value (None without traffic)."""
    failed: dict[str, float] = {}
    seen: dict[str, bool] = {}
    for outcome in FAILED_OUTCOMES:
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
                seen.setdefault(key, False)
                continue
            seen[key] = True
            failed[key] = failed.get(key, 0.0) + r.value
    return {k: (max(0.0, 1.0 - failed.get(k, 0.0)) if ok else None) for k, ok in seen.items()}


def link_stats(
    query: MetricsQuery, now: float, *, window: float = 300.0, steps: Iterable[str] = STEPS
) -> list[dict[str, Any]]:
    """Per core-link step: requests per second, success ratio, p99 seconds and health."""
    rates = _by(query.rate(REQUESTS, window=window, at=now, by=("step",)), "step")
    success = _success(query, now, window, "step")
    p99 = _by(query.quantile(0.99, LATENCY, window=window, at=now, by=("step",)), "step")
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


def sparkline(
    points: list[tuple[float, Any]], *, colour: str = "#1f77b4", height: int = 60
) -> go.Figure:
    """A tiny axis-less line chart."""
    fig = go.Figure(
        go.Scatter(
            x=[t for t, _ in points],
            y=[v for _, v in points],
            mode="lines",
            line={"color": colour, "width": 1.5},
            hoverinfo="y",
        )
    )
    fig.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 0, "b": 0},
        xaxis={"visible": False},
        yaxis={"visible": False},
        showlegend=False,
    )
    return fig


def link_chart(series: dict[str, list[tuple[float, Any]]], title: str = "") -> go.Figure:
    """Rate and failures (left axis) with p99 (right axis) of one link."""
    from datetime import UTC, datetime

    def xs(pts: list[tuple[float, Any]]) -> list[datetime]:
        return [datetime.fromtimestamp(t, UTC) for t, _ in pts]

    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=xs(series.get("rate", [])), name="req/s", y=[v for _, v in series.get("rate", [])]
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs(series.get("failed", [])),
            name="failed/s",
            y=[v for _, v in series.get("failed", [])],
            line={"color": HEALTH_COLOURS[BAD]},
        )
    )
    fig.add_trace(
        go.Scatter(
            x=xs(series.get("p99", [])),
            name="p99 s",
            yaxis="y2",
            y=[v for _, v in series.get("p99", [])],
            line={"dash": "dot"},
        )
    )
    fig.update_layout(
        title=title,
        height=360,
        margin={"l": 40, "r": 40, "t": 40, "b": 30},
        yaxis={"title": "per second"},
        yaxis2={"title": "p99 s", "overlaying": "y", "side": "right"},
    )
    return fig


def active_alerts(engine: Engine) -> list[dict[str, Any]]:
    """Firing and pending alerts (firing first), from ``alert_states``."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(AlertState.__table__)
            .where(AlertState.state.in_(("firing", "pending")))
            .order_by(AlertState.state, AlertState.rule)
        ).all()
    return [
        {
            "rule": r.rule,
            "state": r.state,
            "severity": r.severity,
            "labels": json.loads(r.labels or "{}"),
            "value": r.value,
            "active_since": r.active_since,
        }
        for r in rows
    ]


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
