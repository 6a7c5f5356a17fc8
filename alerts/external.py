"""Alerts evaluated outside paywatch: read from Alertmanager or Prometheus, and the
cross-check of the engine's firing set against Prometheus's ``ALERTS``.

With ``PAYWATCH_ALERT_EVALUATION=prometheus`` the exported rules are evaluated by
Prometheus and the engine stands down; the console then lists what these readers return.
With ``cross-check`` the engine evaluates without notifying and :class:`CrossCheck`
counts where the two disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from backends.errors import HttpStatusError, HttpUnavailable
from backends.http import JsonHttp

from .model import FIRING

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExternalAlert:
    """A firing alert as another engine reports it."""

    name: str
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    state: str = "active"
    starts_at: float | None = None
    source: str = "alertmanager"


def _ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _get(url: str, params: dict[str, str], timeout: float) -> Any:
    """The JSON answer of a GET (:class:`HttpUnavailable` for none,
    :class:`HttpStatusError` for a non-2xx one, ``ValueError`` for one not JSON)."""
    with JsonHttp(timeout=timeout, maxsize=1) as http:
        return http.get(url, params=params).raise_for_status().json()


def alertmanager_alerts(url: str, *, timeout: float = 5.0) -> list[ExternalAlert]:
    """Alertmanager's active alerts (``/api/v2/alerts``; silenced and inhibited ones
    included, their state says so)."""
    doc = _get(url.rstrip("/") + "/api/v2/alerts", {"active": "true"}, timeout)
    out = []
    for a in doc:
        labels = {str(k): str(v) for k, v in (a.get("labels") or {}).items()}
        out.append(
            ExternalAlert(
                labels.get("alertname", ""),
                labels,
                {str(k): str(v) for k, v in (a.get("annotations") or {}).items()},
                str((a.get("status") or {}).get("state") or "active"),
                _ts(a.get("startsAt")),
                "alertmanager",
            )
        )
    return sorted(out, key=lambda e: (e.name, sorted(e.labels.items())))


def prometheus_alerts(url: str, *, timeout: float = 5.0) -> list[ExternalAlert]:
    """Prometheus's firing alerts (the ``ALERTS`` series with ``alertstate="firing"``)."""
    doc = _get(url.rstrip("/") + "/api/v1/query", {"query": "ALERTS"}, timeout)
    out = []
    for s in doc.get("data", {}).get("result", []):
        labels = {str(k): str(v) for k, v in s.get("metric", {}).items()}
        if labels.pop("alertstate", "firing") != "firing":
            continue
        labels.pop("__name__", None)
        out.append(ExternalAlert(labels.get("alertname", ""), labels, source="prometheus"))
    return sorted(out, key=lambda e: (e.name, sorted(e.labels.items())))


def firing_alerts(
    alertmanager_url: str | None, prometheus_url: str | None, *, timeout: float = 5.0
) -> list[ExternalAlert]:
    """The alerts to show when Prometheus evaluates: Alertmanager's when configured (it
    knows silences), else Prometheus's; none when neither is configured."""
    if alertmanager_url:
        return alertmanager_alerts(alertmanager_url, timeout=timeout)
    if prometheus_url:
        return prometheus_alerts(prometheus_url, timeout=timeout)
    return []


class StandDown:
    """The alert job when Prometheus evaluates: it evaluates and notifies nothing and
    says so once in the log."""

    def __init__(self) -> None:
        self.said = False

    def __call__(self) -> None:
        if not self.said:
            log.info(
                "alert evaluation is Prometheus's (PAYWATCH_ALERT_EVALUATION=prometheus): "
                "the paywatch alert engine stands down"
            )
            self.said = True


@dataclass
class Disagreement:
    """Alert names firing on one side only, at one cross-check."""

    paywatch_only: frozenset[str]
    prometheus_only: frozenset[str]

    def __bool__(self) -> bool:
        return bool(self.paywatch_only or self.prometheus_only)


class CrossCheck:
    """The alert job in ``cross-check`` mode: ``evaluate`` (an engine built without
    notifiers) runs, then its firing alert names are compared with Prometheus's.

    ``count(side, n)`` records each disagreement (a metric); only names both sides know
    (``names``, the engine's rules) are compared, so Prometheus's own rules (target
    down...) are not counted against paywatch.
    """

    def __init__(
        self,
        evaluate: Callable[[], Any],
        firing: Callable[[], Iterable[str]],
        prometheus_url: str,
        names: Iterable[str],
        count: Callable[[str, int], None] | None = None,
    ) -> None:
        self.evaluate, self.firing = evaluate, firing
        self.prometheus_url = prometheus_url
        self.names = frozenset(names)
        self.count = count
        self.last: Disagreement | None = None

    def __call__(self) -> Disagreement | None:
        self.evaluate()
        try:
            theirs = {a.name for a in prometheus_alerts(self.prometheus_url)}
        except (HttpUnavailable, HttpStatusError, ValueError) as exc:
            log.warning("alert cross-check: Prometheus unreadable: %s", type(exc).__name__)
            return None
        ours = set(self.firing()) & self.names
        theirs &= self.names
        diff = Disagreement(frozenset(ours - theirs), frozenset(theirs - ours))
        if diff:
            log.warning(
                "alert cross-check: firing in paywatch only %s, in Prometheus only %s",
                sorted(diff.paywatch_only),
                sorted(diff.prometheus_only),
            )
        if self.count is not None:
            for side, names in (
                ("paywatch", diff.paywatch_only),
                ("prometheus", diff.prometheus_only),
            ):
                if names:
                    self.count(side, len(names))
        self.last = diff
        return diff


def engine_firing(engine: Any) -> Callable[[], list[str]]:
    """The names of ``engine``'s firing alerts (an :class:`alerts.AlertEngine`)."""
    return lambda: [a.rule for a in engine.alerts((FIRING,))]
