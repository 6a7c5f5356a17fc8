"""On-call overview: core-link numbers, channel health, alerts, backlogs, guard fallbacks
(and the alert rows' summary, resource, age and runbook section)."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from alerts.schema import AlertState
from collectors.query import MetricsQuery
from console.safe import md

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


def sparkline(
    points: list[tuple[float, Any]], *, colour: str = "#1f77b4", height: int = 60
) -> go.Figure:
    """A tiny axis-less line chart."""
    fig = go.Figure(
        go.Scatter(
            x=[t for t, _ in points],
            y=[v for _, v in points],
            mode="lines+markers",  # a lone point still shows
            line={"color": colour, "width": 1.5},
            marker={"color": colour, "size": 3},
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
    """Rate and failures (left axis) with p99 (right axis) of one link; lines with markers,
    so a series of one point (or points between gaps) still shows."""

    def trace(key: str, name: str, **style: Any) -> go.Scatter:
        pts = series.get(key, [])
        return go.Scatter(
            x=[datetime.fromtimestamp(t, UTC) for t, _ in pts],
            y=[v for _, v in pts],
            name=name,
            mode="lines+markers",
            marker={"size": 6},
            **style,
        )

    fig = go.Figure(
        [
            trace("rate", "req/s"),
            trace("failed", "failed/s", line={"color": HEALTH_COLOURS[BAD]}),
            trace("p99", "p99 s", yaxis="y2", line={"dash": "dot", "color": "#9467bd"}),
        ]
    )
    fig.update_layout(
        title=title,
        height=360,
        margin={"l": 40, "r": 40, "t": 60, "b": 30},
        legend={
            "orientation": "h",
            "x": 1,
            "xanchor": "right",
            "y": 1.02,
            "yanchor": "bottom",
        },  # above the plot, clear of the right axis
        yaxis={"title": "per second", "rangemode": "tozero"},
        yaxis2={"title": "p99 s", "overlaying": "y", "side": "right", "rangemode": "tozero"},
    )
    return fig


# -- active alerts ------------------------------------------------------------------------
#: labels every alert carries (shown elsewhere in the row), not part of "what is affected"
_OWN_LABELS = frozenset({"alertname", "severity"})
_SEVERITY_RANK = {"critical": 0, "page": 1, "ticket": 2, "warning": 3, "info": 4}
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def alert_resource(labels: dict[str, str]) -> str:
    """What the alert is about: its labels other than ``alertname`` and ``severity``
    (``resource`` first), as ``k=v, ...``; empty when the rule has none."""
    rest = sorted((k, v) for k, v in labels.items() if k not in _OWN_LABELS)
    rest.sort(key=lambda kv: kv[0] != "resource")
    return ", ".join(f"{k}={v}" for k, v in rest)


def _alert_order(a: dict[str, Any]) -> tuple:
    return (
        a["state"] != "firing",
        _SEVERITY_RANK.get(a["severity"], 9),
        a["active_since"] or 0.0,
        a["rule"],
    )


def _json_dict(text: str | None) -> dict[str, str]:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}


def active_alerts(engine: Engine) -> list[dict[str, Any]]:
    """Firing and pending alerts from ``alert_states``: firing first, then by severity
    (page before ticket), oldest first. Each has its summary and runbook annotations
    and the ``resource`` it is about."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(AlertState.__table__).where(AlertState.state.in_(("firing", "pending")))
        ).all()
    out = []
    for r in rows:
        labels, notes = _json_dict(r.labels), _json_dict(r.annotations)
        out.append(
            {
                "fingerprint": r.fingerprint,
                "rule": r.rule,
                "state": r.state,
                "severity": r.severity,
                "labels": labels,
                "resource": alert_resource(labels),
                "summary": notes.get("summary", ""),
                "runbook": notes.get("runbook", ""),
                "value": r.value,
                "active_since": r.active_since,
                "fired_at": r.fired_at,
            }
        )
    return sorted(out, key=_alert_order)


def age(seconds: float) -> str:
    """A duration as people say it: ``40 s``, ``14 min``, ``2 h 5 min``, ``3 d 4 h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def clock_time(epoch: float, now: float) -> str:
    """``HH:MM:SS UTC`` (with the date when not today)."""
    t, today = datetime.fromtimestamp(epoch, UTC), datetime.fromtimestamp(now, UTC)
    return f"{t:%H:%M:%S} UTC" if t.date() == today.date() else f"{t:%Y-%m-%d %H:%M} UTC"


@dataclass(frozen=True)
class RunbookSection:
    """One ``### name`` section of docs/runbook.md: its heading, anchor and text."""

    heading: str
    anchor: str
    text: str


def heading_anchor(heading: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading:
    ``slo_channel_call_success_<org>`` → ``slo_channel_call_success_org``."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


@functools.cache
def runbook_sections(path: Path = RUNBOOK) -> dict[str, RunbookSection]:
    """The runbook's sections by anchor (empty when the file is not there)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    out: dict[str, RunbookSection] = {}
    head: str | None = None
    body: list[str] = []
    fenced = False

    def close() -> None:
        if head is not None:
            out[heading_anchor(head)] = RunbookSection(
                head, heading_anchor(head), "\n".join(body).strip()
            )

    for line in lines:
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"(#{1,3}) (.+)", line)
        if m:
            close()
            head, body = (m.group(2), []) if len(m.group(1)) == 3 else (None, [])
        elif head is not None:
            body.append(line)
    close()
    return out


def runbook_section(link: str, rule: str = "", *, path: Path = RUNBOOK) -> RunbookSection | None:
    """The section an alert's ``runbook`` annotation (``docs/runbook.md#anchor``) names, if
    the runbook has it; a section named after the alert's own rule (``…_absent``) first."""
    if not link.startswith("docs/runbook.md#"):
        return None
    sections = runbook_sections(path)
    return sections.get(rule) or sections.get(link.split("#", 1)[1])


_BADGE = {"critical": "red", "page": "red", "ticket": "orange", "warning": "orange"}


def alert_markdown(a: dict[str, Any], now: float, silence: Any = None) -> str:
    """One alert as one line of Markdown: severity badge, summary, resource, state and
    since when, and the silence covering it. Every stored string goes through
    :func:`console.safe.md` (labels and annotations are data, not markup)."""
    colour = _BADGE.get(a["severity"], "gray")
    parts = [f":{colour}-badge[{md(a['severity'] or '?')}] **{md(a['summary'] or a['rule'])}**"]
    if a["resource"]:
        parts.append(md(a["resource"]))
    since = a["active_since"]
    state = md(a["state"])
    parts.append(f"{state} since {clock_time(since, now)} ({age(now - since)})" if since else state)
    if silence is not None:
        parts.append(
            f":gray-badge[silenced until {clock_time(silence.ends_at, now)} by "
            f"{md(silence.creator)}]"
        )
    return " · ".join(parts)


def alert_table(alerts: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
    """The alerts as table rows (rule, state, severity, resource, since, labels as k=v)."""
    return [
        {
            "rule": a["rule"],
            "state": a["state"],
            "severity": a["severity"],
            "resource": a["resource"],
            "since": clock_time(a["active_since"], now) if a["active_since"] else "",
            "labels": ", ".join(f"{k}={v}" for k, v in sorted(a["labels"].items())),
        }
        for a in alerts
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
