"""Rows for the On-call → Alerts page: silences, acknowledgements, transitions, the
notification log and the inhibition rules, as plain dicts for ``st.dataframe``. The
Overview shows its silences with the same :func:`silence_rows` and :func:`silence_choice`.

Labels, comments and names are people's or rules' data: tables show them as text (a
dataframe cell is never rendered as Markdown)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from alerts.acks import Ack
from alerts.external import ExternalAlert
from alerts.history import AckEvent
from alerts.inhibit import InhibitRule
from alerts.model import Alert, NotificationRecord, Transition
from alerts.silences import Silence
from console.safe import md
from console.views.alerts import alert_resource, clock_time

#: what the notification log's statuses mean, for the page's legend
STATUS_TEXT = {
    "sent": "delivered to the receiver",
    "failed": "the receiver refused or did not answer (tried again later)",
    "silenced": "left out: a silence matched",
    "inhibited": "left out: an inhibition rule's source alert fires",
    "acked": "left out: someone acknowledged it",
}


def handling_badges(
    fingerprint: str,
    held: Mapping[str, tuple[InhibitRule, Alert]],
    acked: Mapping[str, Ack],
) -> str:
    """What is being done about an alert, as Markdown badges after its line (empty when
    nothing): inhibited by which source and rule, acknowledged by whom and why. The
    Overview and the Alerts page show the same."""
    parts = []
    if fingerprint in held:
        rule, source = held[fingerprint]
        parts.append(f":gray-badge[inhibited by {md(source.rule)} ({md(rule.name)})]")
    ack = acked.get(fingerprint)
    if ack is not None:
        parts.append(f":violet-badge[acked by {md(ack.creator)}]: {md(ack.comment)}")
    return "".join(f" · {p}" for p in parts)


def silence_matchers(s: Silence) -> str:
    """Every matcher of ``s`` with its operator (``alertname=x, resource=~red.*``): how the
    Overview and the Alerts page show a silence."""
    return ", ".join(s.matchers_text())


def silence_choice(s: Silence, now: float) -> str:
    """A silence as an "End silence" choice: id, matchers, end."""
    return f"#{s.id} {silence_matchers(s)} until {clock_time(s.ends_at, now)}"


def silence_rows(silences: Iterable[Silence], now: float) -> list[dict[str, Any]]:
    """The silences table of the Overview and the Alerts page."""
    return [
        {
            "id": s.id,
            "state": "active"
            if s.is_active(now)
            else "pending"
            if s.starts_at > now
            else "expired",
            "matchers": silence_matchers(s),
            "creator": s.creator,
            "comment": s.comment,
            "starts": clock_time(s.starts_at, now),
            "ends": clock_time(s.ends_at, now),
        }
        for s in silences
    ]


def ack_rows(
    acks: Iterable[Ack], now: float, alerts: Mapping[str, Alert] | None = None
) -> list[dict[str, Any]]:
    """Acknowledgements with their status against ``alerts`` (fingerprint → the alert as
    it is now): in force, ended (resolved or fired again since) or withdrawn (by whom,
    when, why)."""
    alerts = alerts or {}
    return [
        {
            "id": a.id,
            "rule": a.rule,
            "fingerprint": a.fingerprint[:12],
            "by": a.creator,
            "comment": a.comment,
            "at": clock_time(a.at, now),
            "status": a.status(alerts.get(a.fingerprint)),
            "withdrawn": ""
            if a.withdrawn_at is None
            else f"{clock_time(a.withdrawn_at, now)} by {a.withdrawn_by}: {a.withdraw_comment}",
        }
        for a in acks
    ]


def history_rows(
    transitions: Iterable[Transition],
    now: float,
    acks: Iterable[AckEvent] = (),
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Transitions and acknowledgement events (made, withdrawn), newest first."""
    rows: list[tuple[float, dict[str, Any]]] = [
        (
            t.at,
            {
                "at": clock_time(t.at, now),
                "rule": t.rule,
                "resource": alert_resource(t.labels),
                "change": f"{t.from_state} → {t.to_state}",
                "value": t.value,
                "fingerprint": t.fingerprint[:12],
            },
        )
        for t in transitions
    ]
    rows += [
        (
            e.at,
            {
                "at": clock_time(e.at, now),
                "rule": e.rule,
                "resource": alert_resource(e.labels),
                "change": f"{e.kind} by {e.by}: {e.comment}",
                "value": None,
                "fingerprint": e.fingerprint[:12],
            },
        )
        for e in acks
    ]
    rows.sort(key=lambda r: r[0], reverse=True)  # stable: equal times keep their order
    return [r for _, r in rows[:limit]]


def _why(record: NotificationRecord) -> str:
    """Who or what held the alerts back (silence id and creator, inhibition rule...)."""
    if record.status not in ("silenced", "inhibited", "acked"):
        return record.last_error
    try:
        held = json.loads(record.payload or "{}")
    except ValueError:
        return ""
    parts = set()
    for why in held.values() if isinstance(held, dict) else ():
        if "silence_id" in why:
            parts.add(f"silence #{why['silence_id']} by {why.get('by', '')}")
        elif "rule" in why:
            parts.add(f"rule {why['rule']} (source {why.get('by', '')})")
        elif "ack_id" in why:
            parts.add(f"ack #{why['ack_id']} by {why.get('by', '')}")
    return "; ".join(sorted(parts))


def notification_rows(
    records: Iterable[NotificationRecord], now: float, names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The notification log; ``names`` (fingerprint → rule) names the alerts in a row."""
    names = names or {}
    return [
        {
            "at": clock_time(r.at, now),
            "receiver": r.receiver,
            "status": r.status,
            "attempts": r.attempts,
            "group": r.group_key,
            "alerts": ", ".join(names.get(fp, fp[:12]) for fp in r.fingerprints),
            "why / error": _why(r),
        }
        for r in records
    ]


def inhibit_rows(rules: Sequence[InhibitRule]) -> list[dict[str, Any]]:
    return [
        {
            "rule": r.name,
            "while firing": ", ".join(map(str, r.source)),
            "do not notify": ", ".join(map(str, r.target)),
            "equal labels": ", ".join(r.equal),
        }
        for r in rules
    ]


def external_rows(alerts: Iterable[ExternalAlert], now: float) -> list[dict[str, Any]]:
    """Alerts Prometheus evaluated (``PAYWATCH_ALERT_EVALUATION=prometheus``), as read
    from Alertmanager or Prometheus by :func:`alerts.external.firing_alerts`."""
    return [
        {
            "alert": a.name,
            "severity": a.labels.get("severity", ""),
            "resource": alert_resource(a.labels),
            "state": a.state,
            "since": clock_time(a.starts_at, now) if a.starts_at is not None else "",
            "summary": a.annotations.get("summary", ""),
            "from": a.source,
        }
        for a in alerts
    ]
