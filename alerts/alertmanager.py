"""Alertmanager's API v2, fed the way Prometheus feeds it.

* every firing alert is re-sent every ``resend_interval`` (default 60 s) with
  ``endsAt = now + resolve_window`` (default four intervals): after an Alertmanager
  restart that lost its storage the alerts are back within one interval, and when
  paywatch's evaluator dies they expire by themselves within the window;
* a new firing alert, and an alert that resolves, are sent at the evaluation that saw
  the change; a resolved one carries ``endsAt`` = its end and stays in every push for
  ``resolved_retention`` (15 min), so one lost post does not leave it firing;
* annotations go out with their current values, plus an absolute ``runbook_url``;
  ``generatorURL`` is the console's alert view; every alert carries the ``service``
  and ``env`` labels Alertmanager's routes match on.

Grouping, repeats and routing to humans are Alertmanager's job, so this path does not
go through paywatch's dispatcher (group_wait / group_interval / repeat_interval).
paywatch's silences are mirrored into Alertmanager (``mirror_silences``, on by default:
:mod:`alerts.am_silences`) and silenced alerts are sent, so Alertmanager shows them
silenced; an alert under a silence Alertmanager does not have (mirroring off, failed or
refused) is left out, and Alertmanager ends it after the window. Sends made because
something changed, and failed sends, are recorded in ``alert_notifications`` (receiver
``alertmanager``); routine re-sends are not.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .am_silences import SilenceMirror
from .dispatch import row_to_alert
from .model import FIRING, RESOLVED, Alert, Delivery, Notification
from .notify import HttpNotifier, iso
from .schema import AlertNotification, AlertState
from .silences import SilenceStore, first_match

log = logging.getLogger(__name__)
_S = cast(sa.Table, AlertState.__table__)
_N = cast(sa.Table, AlertNotification.__table__)

#: the console page that lists alerts (``console/app.py``: ``oncall_alerts.py``)
CONSOLE_ALERT_PAGE = "/oncall_alerts"
#: where the default rules' ``runbook`` annotation points (``docs/runbook.md#anchor``)
RUNBOOK_PREFIX = "docs/runbook.md#"
_LOCAL_RUNBOOK = Path(__file__).resolve().parents[1] / "docs" / "runbook.md"


def runbook_link(base_url: str | None, anchor: str) -> str:
    """``base_url#anchor``, absolute: ``base_url`` is where docs/runbook.md is rendered
    (``PAYWATCH_RUNBOOK_BASE_URL``); unset, the local file's ``file://`` URL. The
    notifier's ``runbook_url`` and the exported rules' (``paywatch rules export``) both."""
    base = base_url or _LOCAL_RUNBOOK.as_uri()
    return f"{base.split('#')[0]}#{anchor}"


def runbook_anchor(alert: Alert) -> str:
    """The runbook section of ``alert``: its ``runbook`` annotation's anchor, else its name."""
    ref = alert.annotations.get("runbook", "")
    return ref.partition("#")[2] if "#" in ref else alert.rule


class AlertmanagerNotifier(HttpNotifier):
    """Posts alerts to Alertmanager's ``/api/v2/alerts``.

    ``console_url``: the console's base URL (``generatorURL`` is its alert view);
    ``runbook_base_url``: where docs/runbook.md is rendered (default: the local file);
    ``service`` and ``env``: labels added to every alert; ``resend_interval``: how often
    firing alerts are re-sent (:class:`AlertmanagerSync`); ``resolve_window``: how far
    ahead a firing alert's ``endsAt`` lies (default ``4 * resend_interval``);
    ``mirror_silences``: paywatch's silences are created and expired in this
    Alertmanager too (:class:`alerts.am_silences.SilenceMirror`).
    """

    def __init__(
        self,
        base_url: str,
        *,
        name: str = "alertmanager",
        console_url: str = "http://127.0.0.1:8501",
        runbook_base_url: str | None = None,
        service: str = "paywatch",
        env: str = "dev",
        resend_interval: float = 60.0,
        resolve_window: float | None = None,
        retries: int = 2,
        mirror_silences: bool = True,
        **kw: Any,
    ) -> None:
        if resend_interval <= 0:
            raise ValueError("resend_interval must be > 0")
        super().__init__(base_url.rstrip("/") + "/api/v2/alerts", name=name, retries=retries, **kw)
        self.console_url = console_url.rstrip("/")
        self.runbook_base_url = runbook_base_url or _LOCAL_RUNBOOK.as_uri()
        self.service = service
        self.env = env
        self.resend_interval = resend_interval
        self.am_url = base_url.rstrip("/")
        self.mirror_silences = mirror_silences
        self.resolve_window = resolve_window if resolve_window else 4 * resend_interval
        if self.resolve_window <= resend_interval:
            raise ValueError("resolve_window must exceed resend_interval")

    def runbook_url(self, alert: Alert) -> str:
        return runbook_link(self.runbook_base_url, runbook_anchor(alert))

    def generator_url(self, alert: Alert) -> str:
        return f"{self.console_url}{CONSOLE_ALERT_PAGE}?alert={quote(alert.fingerprint)}"

    def item(self, a: Alert, now: float) -> dict[str, Any]:
        """One alert in API v2 form, as of ``now``."""
        start = a.fired_at if a.fired_at is not None else (a.active_since or now)
        if a.state == RESOLVED:
            end = a.resolved_at if a.resolved_at is not None else now
        else:
            end = now + self.resolve_window
        labels = {**a.labels, "alertname": a.rule, "service": self.service, "env": self.env}
        return {
            "labels": {k: str(v) for k, v in labels.items()},
            "annotations": {**a.annotations, "runbook_url": self.runbook_url(a)},
            "startsAt": iso(start),
            "endsAt": iso(max(end, start)),
            "generatorURL": self.generator_url(a),
        }

    def body(self, notification: Notification) -> bytes:
        out = [self.item(a, notification.at) for a in notification.alerts]
        return json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()


class AlertmanagerSync:
    """Keeps Alertmanager told about every firing alert (see the module docstring).

    Runs after each evaluation (:meth:`alerts.engine.AlertEngine.evaluate`); state (the
    last push and what it held) lives in memory, so a restarted worker pushes at once.
    """

    def __init__(
        self,
        engine: Engine,
        silences: SilenceStore,
        alert_names: Sequence[str],
        notifiers: Sequence[AlertmanagerNotifier],
        *,
        resolved_retention: float = 900.0,
    ) -> None:
        self.engine = engine
        self.silences = silences
        self.alert_names = tuple(alert_names)
        self.notifiers = list(notifiers)
        self.resolved_retention = resolved_retention
        self._last: dict[str, float] = {}  # receiver → last successful push
        self._told: dict[str, dict[str, str]] = {}  # receiver → {fingerprint: state}
        self.mirrors = {
            n.name: SilenceMirror(n.am_url, silences, interval=n.resend_interval)
            for n in self.notifiers
            if n.mirror_silences
        }

    def alerts(self, now: float, *, mirrored: Collection[int] = ()) -> list[Alert]:
        """Firing alerts not silenced, and those resolved within the retention; alerts
        under a silence in ``mirrored`` (ids of silences Alertmanager has) are kept."""
        q = _S.select().where(
            _S.c.rule.in_(self.alert_names),
            sa.or_(
                _S.c.state == FIRING,
                sa.and_(_S.c.state == RESOLVED, _S.c.resolved_at >= now - self.resolved_retention),
            ),
        )
        with self.engine.connect() as conn:
            found = [row_to_alert(r) for r in conn.execute(q.order_by(_S.c.fingerprint))]
        firing = any(a.state == FIRING for a in found)
        active = [s for s in self.silences.active(now) if s.id not in mirrored] if firing else []
        return [
            a
            for a in found
            if a.state == RESOLVED or not active or first_match(active, a.labels) is None
        ]

    def run(self, now: float) -> list[Delivery]:
        """Push to every Alertmanager that is due; the deliveries made."""
        plain = self.alerts(now)
        out: list[Delivery] = []
        for n in self.notifiers:
            mirror = self.mirrors.get(n.name)
            # silences first, so Alertmanager never pages for a silenced alert; alerts
            # under a silence it does not have are left out, as without mirroring
            if mirror is not None and mirror.sync(now) and mirror.ids:
                alerts = self.alerts(now, mirrored=set(mirror.ids))
            else:
                alerts = plain
            state = {a.fingerprint: a.state for a in alerts}
            told = self._told.get(n.name)
            changed = told is None or any(told.get(fp) != s for fp, s in state.items())
            last = self._last.get(n.name)
            if not alerts or not (changed or last is None or now - last >= n.resend_interval):
                continue
            note = Notification("alertmanager", {}, _status(alerts), tuple(alerts), now)
            d = n.send(note)
            if d.status == "sent":
                self._last[n.name], self._told[n.name] = now, state
            if changed or d.status != "sent":
                self._record(note, d)
            out.append(d)
        return out

    def _record(self, note: Notification, d: Delivery) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                _N.insert().values(
                    receiver=d.receiver[:64],
                    group_key=note.group_key,
                    fingerprints=json.dumps([a.fingerprint for a in note.alerts]),
                    status=d.status,
                    attempts=d.attempts,
                    last_error=d.last_error,
                    payload=d.payload,
                    at=note.at,
                )
            )

    def close(self) -> None:
        for n in self.notifiers:
            n.close()
        for m in self.mirrors.values():
            m.close()


def _status(alerts: Sequence[Alert]) -> str:
    return FIRING if any(a.state == FIRING for a in alerts) else RESOLVED
