"""Notification dispatch: which alerts are due, grouping, timing, silences, records.

Alertmanager's model, driven by evaluations instead of its own timers:

* due: a firing alert never notified since it fired, or not for ``repeat_interval``;
  a resolved alert whose firing was notified and whose end was not;
* grouping: alerts with the same values of ``group_by`` travel together (``"rule"``
  means the alert name); a due group also carries its other firing alerts;
* timing: a group's first message waits ``group_wait`` after its first alert fired;
  later ones at least ``group_interval`` after the previous attempt;
* silences: a silenced firing alert is left out and recorded as ``silenced`` (once per
  ``repeat_interval``); it is notified when the silence ends if still firing. A
  resolved notice still goes out for an alert whose firing was already notified, so
  receivers can close what they opened (Alertmanager #226).
* inhibition and acknowledgements: a firing alert inhibited by another firing one
  (:mod:`alerts.inhibit`) or acknowledged by someone (:mod:`alerts.acks`) is left out
  and recorded as ``inhibited`` / ``acked``, like a silenced one.

A group is marked notified only when every receiver accepted it; otherwise it is sent
again (to all receivers) after ``group_interval``: at-least-once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .acks import AckStore
from .inhibit import DEFAULT_INHIBIT_RULES, InhibitRule, inhibited
from .model import FIRING, RESOLVED, Alert, Delivery, Notification, NotificationRecord
from .notify import Notifier
from .schema import AlertNotification, AlertState
from .silences import SilenceStore, first_match

log = logging.getLogger(__name__)
_S = cast(sa.Table, AlertState.__table__)
_N = cast(sa.Table, AlertNotification.__table__)
#: the notification log's receiver for alerts left out, by status
_HELD_BY = {"silenced": "silence", "inhibited": "inhibit", "acked": "ack"}


def row_to_alert(r: sa.Row) -> Alert:
    return Alert(
        r.fingerprint,
        r.rule,
        json.loads(r.labels),
        json.loads(r.annotations or "{}"),
        r.severity,
        r.state,
        r.value,
        r.active_since,
        r.fired_at,
        r.resolved_at,
        r.last_eval,
        r.last_notified,
    )


class Dispatcher:
    def __init__(
        self,
        engine: Engine,
        silences: SilenceStore,
        alert_names: Sequence[str],
        *,
        group_by: tuple[str, ...],
        group_wait: float,
        group_interval: float,
        repeat_interval: float,
    ) -> None:
        self.engine = engine
        self.silences = silences
        self.alert_names = tuple(alert_names)
        self.group_by = group_by
        self.group_wait = group_wait
        self.group_interval = group_interval
        self.repeat_interval = repeat_interval
        self.acks = AckStore(engine)
        self.inhibit_rules: tuple[InhibitRule, ...] = DEFAULT_INHIBIT_RULES

    def group_of(self, alert: Alert) -> tuple[str, dict[str, str]]:
        """The group key (≤ 256 chars) and the group's labels."""
        labels = {k: alert.rule if k == "rule" else alert.labels.get(k, "") for k in self.group_by}
        key = "{" + ",".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in labels.items())
        key += "}"
        if len(key) > 256:
            key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
        return key, labels

    def due(self, a: Alert, now: float) -> bool:
        if a.state == FIRING:
            return (
                a.last_notified is None
                or a.fired_at is None
                or a.last_notified < a.fired_at
                or now - a.last_notified >= self.repeat_interval
            )
        return a.state == RESOLVED

    def _candidates(self) -> list[Alert]:
        resolved_unsent = sa.and_(
            _S.c.state == RESOLVED,
            _S.c.last_notified.is_not(None),
            _S.c.last_notified < _S.c.resolved_at,
        )
        q = _S.select().where(
            _S.c.rule.in_(self.alert_names), sa.or_(_S.c.state == FIRING, resolved_unsent)
        )
        with self.engine.connect() as conn:
            return [row_to_alert(r) for r in conn.execute(q.order_by(_S.c.fingerprint))]

    def _last_attempts(self, keys: list[str]) -> dict[str, float]:
        q = (
            sa.select(_N.c.group_key, sa.func.max(_N.c.at))
            .where(_N.c.group_key.in_(keys), _N.c.status.in_(("sent", "failed")))
            .group_by(_N.c.group_key)
        )
        with self.engine.connect() as conn:
            return {k: at for k, at in conn.execute(q)}

    def run(self, notifier: Notifier, now: float) -> list[Delivery]:
        groups: dict[str, tuple[dict[str, str], list[Alert]]] = {}
        for a in self._candidates():
            key, labels = self.group_of(a)
            groups.setdefault(key, (labels, []))[1].append(a)
        groups = {k: g for k, g in groups.items() if any(self.due(a, now) for a in g[1])}
        if not groups:
            return []
        last = self._last_attempts(list(groups))
        held = self._held([a for _, g in groups.values() for a in g], now)
        out: list[Delivery] = []
        for key, (labels, members) in groups.items():
            due = [a for a in members if self.due(a, now)]
            if key in last:
                if now - last[key] < self.group_interval:
                    continue
            else:
                firsts = [a.fired_at for a in due if a.state == FIRING and a.fired_at is not None]
                if firsts and now - min(firsts) < self.group_wait:
                    continue
            send = [a for a in members if a.fingerprint not in held]
            for status in ("silenced", "inhibited", "acked"):
                mine = {
                    a.fingerprint: held[a.fingerprint][1]
                    for a in members
                    if held.get(a.fingerprint, ("",))[0] == status
                }
                if mine:
                    self._record_held(key, status, mine, now)
            due_fps = {a.fingerprint for a in due}
            if not any(a.fingerprint in due_fps for a in send):
                continue
            status = FIRING if any(a.state == FIRING for a in send) else RESOLVED
            note = Notification(key, labels, status, tuple(send), now)
            deliveries = self._deliver(notifier, note)
            self._record(note, deliveries)
            out.extend(deliveries)
        return out

    def _held(self, alerts: list[Alert], now: float) -> dict[str, tuple[str, dict]]:
        """Firing alerts not to notify: fingerprint → (status, why), a silence first, then
        an inhibition, then an acknowledgement."""
        firing = [a for a in alerts if a.state == FIRING]
        if not firing:
            return {}
        silences = self.silences.active(now)
        # sources are every firing alert of this engine, not only the due groups'
        blocked = inhibited(self._candidates(), self.inhibit_rules) if self.inhibit_rules else {}
        acked = self.acks.covering(firing)
        out: dict[str, tuple[str, dict]] = {}
        for a in firing:
            s = first_match(silences, a.labels)
            if s is not None:
                out[a.fingerprint] = ("silenced", {"silence_id": s.id, "by": s.creator})
            elif a.fingerprint in blocked:
                rule, source = blocked[a.fingerprint]
                why = {"rule": rule.name, "source": source.fingerprint, "by": source.rule}
                out[a.fingerprint] = ("inhibited", why)
            elif a.fingerprint in acked:
                ack = acked[a.fingerprint]
                out[a.fingerprint] = ("acked", {"ack_id": ack.id, "by": ack.creator})
        return out

    @staticmethod
    def _deliver(notifier: Notifier, note: Notification) -> list[Delivery]:
        try:
            return notifier.notify(note)
        except Exception as exc:  # noqa: BLE001 - notifiers should not raise; record if one does
            log.warning("notifier failed: %s", type(exc).__name__)
            return [Delivery(type(notifier).__name__[:64], "failed", 0, type(exc).__name__)]

    def _record(self, note: Notification, deliveries: list[Delivery]) -> None:
        fps = json.dumps([a.fingerprint for a in note.alerts])
        rows = [
            {
                "receiver": d.receiver[:64],
                "group_key": note.group_key,
                "fingerprints": fps,
                "status": d.status,
                "attempts": d.attempts,
                "last_error": d.last_error,
                "payload": d.payload,
                "at": note.at,
            }
            for d in deliveries
        ]
        sent = bool(deliveries) and all(d.status == "sent" for d in deliveries)
        with self.engine.begin() as conn:
            if rows:
                conn.execute(_N.insert(), rows)
            if sent:
                fp_list = [a.fingerprint for a in note.alerts]
                conn.execute(
                    _S.update().where(_S.c.fingerprint.in_(fp_list)).values(last_notified=note.at)
                )

    def _record_held(self, key: str, status: str, held: dict[str, dict], now: float) -> None:
        """Log alerts left out as ``status``, once per ``repeat_interval`` per set."""
        fps = json.dumps(sorted(held))
        since = now - self.repeat_interval
        with self.engine.begin() as conn:
            seen = conn.execute(
                sa.select(_N.c.id)
                .where(
                    _N.c.group_key == key,
                    _N.c.status == status,
                    _N.c.fingerprints == fps,
                    _N.c.at > since,
                )
                .limit(1)
            ).first()
            if seen is not None:
                return
            conn.execute(
                _N.insert().values(
                    receiver=_HELD_BY[status],
                    group_key=key,
                    fingerprints=fps,
                    status=status,
                    attempts=0,
                    last_error="",
                    payload=json.dumps(held),
                    at=now,
                )
            )

    def records(self, limit: int = 100) -> list[NotificationRecord]:
        q = _N.select().order_by(_N.c.at.desc(), _N.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
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
                for r in conn.execute(q)
            ]
