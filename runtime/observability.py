"""Metrics, the time-series sampler, the query backend and the alert engine of one process.

Each process has its own registry (scrape per process, see docs/metrics.md) and
samples it into the database under its own ``instance`` label. Business gauges
(backlogs, trial balance) are read from the database, so only one process kind
exports them — the worker (or the all-in-one process) — or they would be counted
once per replica.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from sqlalchemy.engine import Engine

from collectors import BusinessSnapshot, CoreMetrics, MetricsQuery, Sampler, TimeSeriesStore
from collectors import make_query as _make_query
from collectors.build_info import register_process_metrics
from collectors.job_metrics import AlertEngineMetrics, JobMetrics
from paycore import PayCore
from paycore.db.schema import CompensationTask, Notification, PayOrder, ReconDifference
from paycore.ledger import pending_count

from .settings import Settings


@dataclass
class Observability:
    registry: CollectorRegistry
    metrics: CoreMetrics
    store: TimeSeriesStore
    sampler: Sampler
    query: MetricsQuery
    jobs: JobMetrics | None = None
    alert_metrics: AlertEngineMetrics | None = None

    def start(self) -> None:
        self.sampler.start()

    def close(self) -> None:
        self.sampler.stop()


def business_snapshot(core: PayCore, trial_ok: Callable[[], bool | None]) -> BusinessSnapshot:
    """The business gauges, from SQL (fund figures never come from metrics)."""
    with core.db.session() as s:
        processing = s.execute(
            sa.select(sa.func.count()).select_from(PayOrder).where(PayOrder.status == "processing")
        ).scalar_one()
        backlog = dict(
            s.execute(
                sa.select(CompensationTask.status, sa.func.count())
                .where(CompensationTask.status.in_(("pending", "running", "manual")))
                .group_by(CompensationTask.status)
            ).all()
        )
        notify = s.execute(
            sa.select(sa.func.count())
            .select_from(Notification)
            .where(Notification.status == "pending")
        ).scalar_one()
        diffs = dict(
            s.execute(
                sa.select(ReconDifference.kind, sa.func.count())
                .where(ReconDifference.status == "open", ReconDifference.resolution != "expected")
                .group_by(ReconDifference.kind)
            ).all()
        )
    ok = trial_ok()
    return BusinessSnapshot(
        processing_orders=int(processing),
        compensation_backlog={k: int(v) for k, v in backlog.items()},
        notification_backlog=int(notify),
        pending_postings=pending_count(core.db),
        recon_differences={k: int(v) for k, v in diffs.items()},
        trial_balance_ok=ok,  # None until the trial-balance job has run: no gauge
    )


def build_observability(
    engine: Engine,
    settings: Settings,
    *,
    role: str,
    business: Callable[[], BusinessSnapshot] | None,
    rejected: tuple[type[BaseException], ...],
) -> Observability:
    """A fresh registry with the pay-link metrics, a sampler into the database, and the
    query backend (Prometheus when ``PAYWATCH_PROMETHEUS_URL`` is set)."""
    registry = CollectorRegistry()
    metrics = CoreMetrics(registry, business=business, rejected=rejected)
    store = TimeSeriesStore(engine)
    register_process_metrics(registry)
    sampler = Sampler(registry, store, instance=sampler_instance(role, settings.node_id))
    query = _make_query(settings.prometheus_url, engine)
    return Observability(
        registry,
        metrics,
        store,
        sampler,
        query,
        jobs=JobMetrics(registry),
        alert_metrics=AlertEngineMetrics(registry),
    )


def sampler_instance(role: str, node_id: int | None) -> str:
    """The embedded store's ``instance`` label: the same after a restart, so a restart
    continues its series instead of starting new ones. Replicas have distinct
    ``PAYWATCH_NODE_ID`` values (docs/scaling.md); without one, the host name."""
    return f"{role}:node-{node_id}" if node_id is not None else f"{role}:{socket.gethostname()}"


def build_alert_engine(
    engine: Engine,
    query: MetricsQuery,
    settings: Settings,
    metrics: AlertEngineMetrics | None = None,
) -> Any:
    """The alert engine with the default core-link rules and the configured notifiers;
    ``metrics`` counts its evaluations and failed rule queries."""
    from alerts import AlertEngine, AlertmanagerNotifier, MultiNotifier, WebhookNotifier
    from alerts import default_rules as alert_rules

    notifiers: list[Any] = []
    if settings.alert_evaluation != "paywatch":
        pass  # Prometheus evaluates, or the engine only cross-checks: it never notifies
    elif settings.alertmanager_url:
        notifiers.append(
            AlertmanagerNotifier(
                settings.alertmanager_url,
                console_url=settings.console_url,
                runbook_base_url=settings.runbook_base_url,
                service=settings.service,
                env=settings.env,
                resend_interval=settings.alertmanager_resend_s,
            )
        )
    hook = settings.extra.get("alert_webhook_url") or os.environ.get("PAYWATCH_ALERT_WEBHOOK_URL")
    if hook and settings.alert_evaluation == "paywatch":
        notifiers.append(WebhookNotifier(hook, settings.notify_secret()))
    notifier = MultiNotifier(notifiers) if len(notifiers) > 1 else (notifiers or [None])[0]
    rules = alert_rules(settings.pay_orgs)
    if metrics is not None:
        from alerts.meta_rules import with_engine_self_check

        rules = with_engine_self_check(rules, metrics)
    return AlertEngine(engine, query, rules, notifier=notifier, metrics=metrics)


def alert_job(
    engine: Engine,
    query: MetricsQuery,
    settings: Settings,
    metrics: AlertEngineMetrics | None = None,
    registry: CollectorRegistry | None = None,
    build: Callable[[], Any] | None = None,
) -> Callable[[], Any]:
    """The worker's alert job for ``settings.alert_evaluation``: the engine's ``evaluate``
    (``paywatch``); a stand-down that only logs once (``prometheus``); or the engine,
    built without notifiers, cross-checked against Prometheus's ``ALERTS``
    (``cross-check``), disagreements counted in
    ``paywatch_alert_crosscheck_disagreements_total{only_in}`` on ``registry``.
    ``build`` replaces :func:`build_alert_engine` (tests)."""
    from alerts.external import CrossCheck, StandDown, engine_firing

    mode = settings.alert_evaluation
    if mode == "prometheus":
        return StandDown()
    alerts = build() if build is not None else build_alert_engine(engine, query, settings, metrics)
    if mode != "cross-check":
        return alerts.evaluate
    if not settings.prometheus_url:
        from .errors import SettingsError

        raise SettingsError("PAYWATCH_ALERT_EVALUATION=cross-check needs PAYWATCH_PROMETHEUS_URL")
    count = None
    if registry is not None:
        from prometheus_client import Counter

        counter = Counter(
            "paywatch_alert_crosscheck_disagreements",
            "Alerts firing in one of paywatch's engine and Prometheus only, per cross-check",
            ["only_in"],
            registry=registry,
        )

        def count(side: str, n: int) -> None:
            counter.labels(side).inc(n)

    return CrossCheck(
        alerts.evaluate, engine_firing(alerts), settings.prometheus_url, alerts.alert_names, count
    )
