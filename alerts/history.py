"""Reading what the alert engine did: alert states, transitions, the notification log.

For the console and the CLI, which have no rule set at hand (``AlertEngine.history`` and
``notifications`` need one). The notification log says, per group and receiver, what was
sent, when and with what result, and what was left out: ``silenced``, ``inhibited``
(with the rule and the source alert) or ``acked``. :func:`ack_events` lists who
acknowledged an alert and who withdrew an acknowledgement, when and why, for the alert
history next to its transitions.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .dispatch import row_to_alert
from .model import FIRING, PENDING, Alert, NotificationRecord, Transition
from .schema import AlertAck, AlertHistory, AlertNotification, AlertState

_S = cast(sa.Table, AlertState.__table__)
_H = cast(sa.Table, AlertHistory.__table__)
_N = cast(sa.Table, AlertNotification.__table__)
_A = cast(sa.Table, AlertAck.__table__)

ACKED, ACK_WITHDRAWN = "acked", "ack withdrawn"


def alerts(engine: Engine, states: Iterable[str] = (PENDING, FIRING)) -> list[Alert]:
    """Alert instances in ``states`` (default: pending and firing), by rule."""
    q = _S.select().where(_S.c.state.in_(list(states))).order_by(_S.c.rule, _S.c.fingerprint)
    with engine.connect() as conn:
        return [row_to_alert(r) for r in conn.execute(q)]


def transitions(
    engine: Engine, limit: int = 100, fingerprint: str | None = None
) -> list[Transition]:
    """Lifecycle transitions, newest first (one alert's with ``fingerprint``)."""
    q = _H.select().order_by(_H.c.at.desc(), _H.c.id.desc()).limit(limit)
    if fingerprint:
        q = q.where(_H.c.fingerprint == fingerprint)
    with engine.connect() as conn:
        return [
            Transition(
                r.fingerprint,
                r.rule,
                json.loads(r.labels),
                r.from_state,
                r.to_state,
                r.value,
                r.at,
            )
            for r in conn.execute(q)
        ]


def notification_log(
    engine: Engine, limit: int = 100, fingerprint: str | None = None
) -> list[NotificationRecord]:
    """Notification log rows, newest first (those naming ``fingerprint`` if given)."""
    q = _N.select().order_by(_N.c.at.desc(), _N.c.id.desc())
    if fingerprint:
        q = q.where(_N.c.fingerprints.contains(json.dumps(fingerprint), autoescape=True))
    with engine.connect() as conn:
        return [
            NotificationRecord(
                r.id,
                r.receiver,
                r.group_key,
                tuple(json.loads(r.fingerprints)),
                r.status,
                r.attempts,
                r.last_error,
                r.payload,
                r.at,
            )
            for r in conn.execute(q.limit(limit))
        ]


@dataclass(frozen=True)
class AckEvent:
    """An acknowledgement made (``acked``) or withdrawn (``ack withdrawn``)."""

    fingerprint: str
    rule: str
    labels: dict[str, str]
    kind: str
    by: str
    comment: str
    ack_id: int
    at: float


def ack_events(engine: Engine, limit: int = 100, fingerprint: str | None = None) -> list[AckEvent]:
    """Acknowledgements and their withdrawals, newest first (``fingerprint``'s only)."""
    labels = sa.select(_S.c.labels).where(_S.c.fingerprint == _A.c.fingerprint)
    q = sa.select(_A, labels.scalar_subquery().label("labels"))
    if fingerprint:
        q = q.where(_A.c.fingerprint == fingerprint)
    made = q.order_by(_A.c.at.desc(), _A.c.id.desc()).limit(limit)
    gone = (
        q.where(_A.c.withdrawn_at.is_not(None))
        .order_by(_A.c.withdrawn_at.desc(), _A.c.id.desc())
        .limit(limit)
    )
    out: list[AckEvent] = []
    with engine.connect() as conn:
        for r in conn.execute(made):
            lab = json.loads(r.labels or "{}")
            out.append(
                AckEvent(r.fingerprint, r.rule, lab, ACKED, r.creator, r.comment, r.id, r.at)
            )
        for r in conn.execute(gone):
            lab = json.loads(r.labels or "{}")
            by, why = r.withdrawn_by or "", r.withdraw_comment or ""
            out.append(
                AckEvent(r.fingerprint, r.rule, lab, ACK_WITHDRAWN, by, why, r.id, r.withdrawn_at)
            )
    out.sort(key=lambda e: (e.at, e.ack_id, e.kind == ACK_WITHDRAWN), reverse=True)
    return out[:limit]
