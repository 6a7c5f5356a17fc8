"""``paywatch worker``: the scheduler's jobs over one platform.

Safe to run side by side: tasks and notifications are claimed with leases
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and singleton jobs (reconciliation,
alert evaluation) run under a named lease so they run once across all workers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from paycore.jobs.active_query import ActiveQuery
from paycore.jobs.leases import JobLeases, singleton_job
from paycore.jobs.ledger_jobs import summary_posting_job, trial_balance_job
from paycore.jobs.tasks import default_worker_id
from paycore.jobs.worker import run_worker
from paycore.notify.delivery import NotificationDelivery
from paycore.recon import reconcile_day, reconcile_internal

from .bootstrap import Platform
from .observability import build_alert_engine

log = logging.getLogger(__name__)
Job = tuple[Callable[[], Any], float, str]


def worker_jobs(platform: Platform, worker_id: str) -> tuple[list[Job], list[Any]]:
    """The periodic jobs of a worker, and the objects to close when it stops."""
    core, settings = platform.paycore, platform.settings
    gateway = platform.front.gateway if platform.front is not None else None
    leases = JobLeases(core.db, core.clock)
    delivery = NotificationDelivery(
        core.db,
        secret=settings.notify_secret(),
        clock=core.clock,
        worker_id=worker_id,
        ids=core.ids,
        metrics=core.metrics,
    )
    jobs: list[Job] = [
        (delivery.deliver_due, 5.0, "notifications"),
        (lambda: summary_posting_job(core), 2.0, "summary_posting"),
        (lambda: trial_balance_job(core, platform.record_trial_balance), 300.0, "trial_balance"),
    ]
    if gateway is not None:
        active = ActiveQuery(core, gateway)
        jobs.append((active.run_once, 30.0, "active_query"))
        jobs.append(
            (
                singleton_job(
                    leases,
                    "recon:internal",
                    worker_id,
                    55,
                    lambda: reconcile_internal(core, gateway=gateway),
                ),
                60.0,
                "recon_internal",
            )
        )
        for org in settings.pay_orgs:
            jobs.append(
                (
                    _daily_recon(core, gateway, leases, worker_id, org),
                    600.0,
                    f"recon_external_{org}",
                )
            )
    obs = platform.observability
    if obs is not None:
        alerts = build_alert_engine(core.db.engine, obs.query, settings)
        jobs.append(
            (
                singleton_job(leases, "alerts:evaluate", worker_id, 25, alerts.evaluate),
                30.0,
                "alerts",
            )
        )
    for job in platform.extra_worker_jobs():
        jobs.append(job)
    return jobs, [delivery]


def _daily_recon(
    core: Any, gateway: Any, leases: JobLeases, worker_id: str, org: str
) -> Callable[[], Any]:
    """T+1: once per day per pay org, after the channel's file is ready (01:00 UTC)."""

    def yesterday() -> str:
        return (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

    def run() -> Any:
        if datetime.now(UTC).hour < 1:
            return None
        day = datetime.now(UTC).date() - timedelta(days=1)
        return reconcile_day(core, gateway, org, day)

    return singleton_job(
        leases, lambda: f"recon:{org}:{yesterday()}", worker_id, 3600, run, keep=True
    )


def serve_worker(platform: Platform, stop: threading.Event | None = None) -> int:
    """Run the worker until stopped (SIGTERM/SIGINT or ``stop``)."""
    wid = default_worker_id()
    jobs, closables = worker_jobs(platform, wid)
    try:
        return run_worker(platform, stop, extra_jobs=jobs, worker_id=wid)
    finally:
        for c in closables:
            c.close()
