"""Active alerts on the overview: rows from ``alert_states`` with summary, resource, age
and state, as Markdown lines or table rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from alerts.schema import AlertState
from console.safe import md
from console.views.runbook import plan_url
from stability.plan_schema import Plan

#: labels every alert carries (shown elsewhere in the row), not part of "what is affected"
_OWN_LABELS = frozenset({"alertname", "severity"})
_SEVERITY_RANK = {"critical": 0, "page": 1, "ticket": 2, "warning": 3, "info": 4}


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
    (page before ticket), oldest first. Each has its summary and runbook annotations,
    the ``resource`` it is about, and the ``plan`` that answers it (the one its ``plan``
    annotation names, if such a plan is stored; else empty)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(AlertState.__table__).where(AlertState.state.in_(("firing", "pending")))
        ).all()
        stored = set(conn.execute(sa.select(Plan.name)).scalars()) if rows else set()
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
                "plan": notes.get("plan", "") if notes.get("plan") in stored else "",
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


_BADGE = {"critical": "red", "page": "red", "ticket": "orange", "warning": "orange"}


def alert_markdown(a: dict[str, Any], now: float, silence: Any = None) -> str:
    """One alert as one line of Markdown: severity badge, summary, resource, state and
    since when, the silence covering it, and a link to its switch plan. Every stored
    string goes through :func:`console.safe.md` (labels and annotations are data, not
    markup)."""
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
    plan = a.get("plan", "")
    if plan:
        parts.append(f"[plan: {md(plan)}]({plan_url(plan)})")
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
