"""The alert engine: evaluate rules, keep each alert's lifecycle, hand groups to notifiers.

Lifecycle per alert instance (rule + labels → fingerprint)::

    inactive ──condition──► pending ──held for_s──► firing ──condition clears──► resolved
        ▲                     │                                                   │
        └── clears (silent) ──┘                          condition again ─► pending/firing

A rule with ``for_s == 0`` goes straight to firing. State lives in ``alert_states``;
every transition is appended to ``alert_history``. A rule whose query raises keeps its
alerts as they are (a broken metrics backend must not resolve every page).
Evaluation is meant to run as a singleton job (one evaluator at a time).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from collectors.query import MetricsQuery

from .alertmanager import AlertmanagerNotifier, AlertmanagerSync
from .base import Rule
from .dispatch import Dispatcher, row_to_alert
from .errors import RuleError
from .model import (
    FIRING,
    INACTIVE,
    PENDING,
    RESOLVED,
    Alert,
    Delivery,
    Instance,
    NotificationRecord,
    Transition,
    canonical_labels,
)
from .notify import MultiNotifier, Notifier
from .schema import AlertHistory, AlertState
from .silences import SilenceStore

log = logging.getLogger(__name__)
_S = cast(sa.Table, AlertState.__table__)
_H = cast(sa.Table, AlertHistory.__table__)


class EngineMetrics(Protocol):
    """Where the engine reports its own health
    (:class:`collectors.job_metrics.AlertEngineMetrics`)."""

    def evaluated(self) -> None: ...

    def rule_failed(self, rule: str) -> None: ...


@dataclass
class EvalResult:
    """What one evaluation did."""

    at: float
    transitions: list[Transition] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # rule name → error
    deliveries: list[Delivery] = field(default_factory=list)


class AlertEngine:
    """Evaluates ``rules`` against ``query`` and persists alert state in ``engine``."""

    def __init__(
        self,
        engine: Engine,
        query: MetricsQuery,
        rules: Iterable[Rule],
        *,
        clock: Callable[[], float] = time.time,
        notifier: Notifier | None = None,
        silences: SilenceStore | None = None,
        group_by: Sequence[str] = ("rule", "severity"),
        group_wait: float = 30.0,
        group_interval: float = 300.0,
        repeat_interval: float = 14400.0,
        metrics: EngineMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.query = query
        self.rules = list(rules)
        names = [n for r in self.rules for n in r.alert_names()]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise RuleError(f"alert names must be unique: {dupes}")
        self.alert_names = tuple(names)
        self.clock = clock
        # Alertmanager is fed like Prometheus feeds it (re-sent, short endsAt), not grouped
        notifier, managers = _split_alertmanagers(notifier)
        self.notifier = notifier
        self.silences = silences or SilenceStore(engine, clock=clock)
        self.dispatcher = Dispatcher(
            engine,
            self.silences,
            self.alert_names,
            group_by=tuple(group_by),
            group_wait=group_wait,
            group_interval=group_interval,
            repeat_interval=repeat_interval,
        )
        self.alertmanagers = (
            AlertmanagerSync(engine, self.silences, self.alert_names, managers)
            if managers
            else None
        )

    # -- evaluation --------------------------------------------------------------------

    def evaluate(self, now: float | None = None) -> EvalResult:
        """Evaluate every rule at ``now`` (default: the clock), then notify."""
        now = self.clock() if now is None else now
        result = EvalResult(now)
        found: dict[str, Instance] = {}
        evaluated: set[str] = set()
        for rule in self.rules:
            try:
                instances = rule.evaluate(self.query, now)
            except Exception as exc:  # noqa: BLE001 - one broken rule must not stop the rest
                log.warning("alert rule %s failed: %s", rule.name, type(exc).__name__)
                result.errors[rule.name] = f"{type(exc).__name__}: {exc}"[:500]
                if self.metrics is not None:
                    self.metrics.rule_failed(rule.name)
                continue
            evaluated.update(rule.alert_names())
            for inst in instances:
                found[inst.fingerprint] = inst  # dedup: one state per fingerprint
        result.transitions = self._apply(now, found, evaluated)
        if self.metrics is not None:
            self.metrics.evaluated()
        if self.notifier is not None:
            result.deliveries = self.dispatch(now)
        if self.alertmanagers is not None:
            result.deliveries += self.alertmanagers.run(now)
        return result

    def dispatch(self, now: float | None = None) -> list[Delivery]:
        """Send the notification groups that are due at ``now`` (``evaluate`` calls this)."""
        if self.notifier is None:
            return []
        return self.dispatcher.run(self.notifier, self.clock() if now is None else now)

    def _apply(self, now: float, found: dict[str, Instance], names: set[str]) -> list[Transition]:
        out: list[Transition] = []
        if not names:
            return out
        with self.engine.begin() as conn:
            rows = {r.fingerprint: r for r in conn.execute(_S.select().where(_S.c.rule.in_(names)))}
            for fp, inst in found.items():
                row = rows.get(fp)
                prev = row.state if row is not None else INACTIVE
                values = self._next(now, inst, row, prev)
                if row is None:
                    conn.execute(_S.insert().values(fingerprint=fp, last_notified=None, **values))
                else:
                    conn.execute(_S.update().where(_S.c.fingerprint == fp).values(**values))
                if values["state"] != prev:
                    out.append(
                        Transition(
                            fp, inst.rule, inst.labels, prev, values["state"], inst.value, now
                        )
                    )
            for fp, row in rows.items():
                if fp in found or row.state not in (PENDING, FIRING):
                    continue
                new = INACTIVE if row.state == PENDING else RESOLVED
                change: dict[str, object] = {"state": new, "last_eval": now}
                if new == INACTIVE:
                    change["active_since"] = None  # a pending that clears: no notice
                else:
                    change["resolved_at"] = now
                conn.execute(_S.update().where(_S.c.fingerprint == fp).values(**change))
                out.append(
                    Transition(fp, row.rule, json.loads(row.labels), row.state, new, row.value, now)
                )
            if out:
                conn.execute(_H.insert(), [self._history_row(t) for t in out])
        for t in out:
            log.info("alert %s %s: %s → %s", t.rule, t.fingerprint[:12], t.from_state, t.to_state)
        return out

    @staticmethod
    def _next(now: float, inst: Instance, row: sa.Row | None, prev: str) -> dict:
        values = {
            "rule": inst.rule,
            "labels": canonical_labels(inst.labels),
            "annotations": json.dumps(inst.annotations, sort_keys=True, ensure_ascii=False),
            "severity": inst.severity,
            "value": inst.value,
            "last_eval": now,
        }
        if prev in (INACTIVE, RESOLVED) or row is None:
            firing = inst.for_s <= 0
            values.update(
                state=FIRING if firing else PENDING,
                active_since=now,
                fired_at=now if firing else None,
                resolved_at=None,
            )
        elif prev == PENDING and now - (row.active_since or now) >= inst.for_s:
            values.update(state=FIRING, fired_at=now)
        else:
            values["state"] = prev
        return values

    @staticmethod
    def _history_row(t: Transition) -> dict:
        return {
            "fingerprint": t.fingerprint,
            "rule": t.rule,
            "labels": canonical_labels(t.labels),
            "from_state": t.from_state,
            "to_state": t.to_state,
            "value": t.value,
            "at": t.at,
        }

    # -- reading -----------------------------------------------------------------------

    def alerts(self, states: Iterable[str] = (PENDING, FIRING)) -> list[Alert]:
        q = _S.select().where(_S.c.state.in_(list(states)), _S.c.rule.in_(self.alert_names))
        with self.engine.connect() as conn:
            rows = conn.execute(q.order_by(_S.c.severity, _S.c.rule, _S.c.fingerprint))
            return [row_to_alert(r) for r in rows]

    def active(self) -> list[Alert]:
        """Pending and firing alerts."""
        return self.alerts((PENDING, FIRING))

    def history(self, limit: int = 100, fingerprint: str | None = None) -> list[Transition]:
        """The newest transitions first."""
        q = _H.select().order_by(_H.c.at.desc(), _H.c.id.desc()).limit(limit)
        if fingerprint is not None:
            q = q.where(_H.c.fingerprint == fingerprint)
        with self.engine.connect() as conn:
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

    def notifications(self, limit: int = 100) -> list[NotificationRecord]:
        return self.dispatcher.records(limit)


def _split_alertmanagers(
    notifier: Notifier | None,
) -> tuple[Notifier | None, list[AlertmanagerNotifier]]:
    """``notifier`` without its Alertmanager receivers, and those receivers."""
    if isinstance(notifier, AlertmanagerNotifier):
        return None, [notifier]
    if isinstance(notifier, MultiNotifier):
        managers = [n for n in notifier.notifiers if isinstance(n, AlertmanagerNotifier)]
        rest = [n for n in notifier.notifiers if not isinstance(n, AlertmanagerNotifier)]
        if managers:
            if len(rest) > 1:
                return MultiNotifier(rest), managers
            return (rest[0] if rest else None), managers
    return notifier, []
