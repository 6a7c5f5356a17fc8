"""``paywatch worker``: the worker's whole job list, its schedule, and the process.

The pay core provides the loop body (:class:`paycore.jobs.Worker`) and the job
callables; this module decides what runs how often (:func:`worker_jobs`,
:func:`build_scheduler`) and runs it until SIGTERM/SIGINT or a stop event
(:func:`run_worker`).

Safe to run side by side: tasks and notifications are claimed with leases
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL), and singleton jobs (reconciliation,
alert evaluation) run under a named lease so they run once across all workers.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from paycore.channels.guarded import GuardedGateway
from paycore.jobs.active_query import ActiveQuery
from paycore.jobs.handlers import Handlers
from paycore.jobs.leases import JobLeases, singleton_job
from paycore.jobs.ledger_jobs import summary_posting_job, trial_balance_job
from paycore.jobs.tasks import TaskQueue, default_worker_id
from paycore.jobs.worker import Worker
from paycore.lifecycle import TradeLifecycle
from paycore.notify.delivery import NotificationDelivery
from paycore.recon import reconcile_day, reconcile_internal
from stability.guard import calling_as

from .bootstrap import Platform
from .observability import alert_job
from .wiring import plan_upkeep

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from collectors.job_metrics import JobMetrics

log = logging.getLogger(__name__)
Job = tuple[Callable[[], Any], float, str]  # (callable, interval seconds, name)
ExtraJob = Job


def worker_jobs(platform: Platform, worker_id: str) -> tuple[list[Job], list[Any]]:
    """The periodic jobs of a worker, and the objects to close when it stops."""
    core, settings = platform.paycore, platform.settings
    gateway = platform.front.gateway if platform.front is not None else None
    recon_gateway = GuardedGateway(gateway, core.guard, "job.reconciliation")
    leases = JobLeases(core.db, core.clock)
    delivery = NotificationDelivery(
        core.db,
        secret=settings.notify_secret(),
        clock=core.clock,
        worker_id=worker_id,
        ids=core.ids,
        metrics=core.metrics,
        guard=core.guard,  # runs as link.notify: POSTs through link.notify -> notification
    )
    lifecycle = TradeLifecycle(core.deps, core.trades)
    jobs: list[Job] = [
        (delivery.deliver_due, 5.0, "notifications"),
        (lambda: summary_posting_job(core), 2.0, "summary_posting"),
        (lambda: trial_balance_job(core, platform.record_trial_balance), 300.0, "trial_balance"),
        # trades that end: as compensation's caller (its database edge), once across workers
        (
            singleton_job(
                leases,
                "lifecycle:expiry",
                worker_id,
                25,
                as_caller("job.compensation", lifecycle.expire_due),
            ),
            30.0,
            "trade_expiry",
        ),
        (
            singleton_job(
                leases,
                "lifecycle:confirm",
                worker_id,
                55,
                as_caller("job.compensation", lifecycle.confirm_due),
            ),
            60.0,
            "auto_confirm",
        ),
    ]
    if gateway is not None:
        active = ActiveQuery(core, GuardedGateway(gateway, core.guard, "job.active_query"))
        jobs.append((as_caller("job.active_query", active.run_once), 30.0, "active_query"))
        jobs.append(
            (
                singleton_job(
                    leases,
                    "recon:internal",
                    worker_id,
                    55,
                    as_caller(
                        "job.reconciliation",
                        lambda: reconcile_internal(core, gateway=recon_gateway),
                    ),
                ),
                60.0,
                "recon_internal",
            )
        )
        for org in settings.pay_orgs:
            jobs.append(
                (
                    as_caller(
                        "job.reconciliation",
                        _daily_recon(core, recon_gateway, leases, worker_id, org),
                    ),
                    600.0,
                    f"recon_external_{org}",
                )
            )
    obs = platform.observability
    if obs is not None:
        evaluate = alert_job(core.db.engine, obs.query, settings, obs.alert_metrics, obs.registry)
        jobs.append(
            (
                # every 10 s: with the store sampled every 5 s, a page reaches Alertmanager
                # no later than a Prometheus scraping and evaluating every 15 s would send it
                singleton_job(leases, "alerts:evaluate", worker_id, 8, evaluate),
                10.0,
                "alerts",
            )
        )
    stability = platform.stability
    if stability is not None and stability.plans is not None:
        upkeep = plan_upkeep(core.db.engine, stability)
        jobs.append((singleton_job(leases, "plans:upkeep", worker_id, 12, upkeep), 15.0, "plans"))
    for job in platform.extra_worker_jobs():
        jobs.append(job)
    return jobs, [delivery]


def as_caller(caller: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` run as the map's ``caller`` (a job): its transactions are that job's
    ``database`` edge (guarded, with the edge's statement timeout)."""

    def run() -> Any:
        with calling_as(caller):
            return fn()

    return run


def _daily_recon(
    core: Any, gateway: Any, leases: JobLeases, worker_id: str, org: str
) -> Callable[[], Any]:
    """T+1: once per day per pay org, after the channel's file is ready (01:00 UTC). A
    download the guard refuses (``ChannelRefused``) fails the run; the day's lease is
    kept, so it is tried again when the lease ends (an hour)."""

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


def build_scheduler(
    worker: Worker,
    extra_jobs: Sequence[ExtraJob] = (),
    *,
    blocking: bool = False,
    compensation_every_s: float = 1.0,
    exceptions_every_s: float = 5.0,
    job_metrics: JobMetrics | None = None,
) -> BaseScheduler:
    """A scheduler (not started) with the compensation jobs and ``extra_jobs``.

    Jobs: ``compensation`` (:meth:`Worker.tick`), ``exception_scan``
    (:meth:`Handlers.enqueue_open_exceptions`), then each ``(fn, seconds, name)`` of
    ``extra_jobs``. Every job has ``max_instances=1, coalesce=True``: a slow run is never
    overlapped by the next, and missed runs collapse into one. With ``job_metrics`` each
    run records its outcome, duration and last success under its name.
    """
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(
        timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 60}
    )
    jobs: list[ExtraJob] = [
        (as_caller("job.compensation", worker.tick), compensation_every_s, "compensation"),
        (
            as_caller("job.compensation", worker.handlers.enqueue_open_exceptions),
            exceptions_every_s,
            "exception_scan",
        ),
        *extra_jobs,
    ]
    for fn, seconds, name in jobs:
        if job_metrics is not None:
            fn = job_metrics.wrap(name, seconds, fn)
        scheduler.add_job(
            fn, "interval", seconds=seconds, id=name, name=name, max_instances=1, coalesce=True
        )
    return scheduler


def build_worker(
    platform: Any,
    *,
    worker_id: str | None = None,
    batch: int = 50,
    stop_event: threading.Event | None = None,
    **queue_options: Any,
) -> Worker:
    """A :class:`Worker` over a platform (:class:`runtime.bootstrap.Platform` or alike).

    Uses ``platform.paycore``; the channel gateway of ``platform.front`` (if any) for
    channel refunds and re-sends, guarded as ``job.compensation`` with the pay core's
    guard; callbacks go to ``platform.settings.api_url``.
    """
    core = platform.paycore
    front = getattr(platform, "front", None)
    gateway = getattr(front, "gateway", None)
    settings = getattr(platform, "settings", None)
    api = getattr(settings, "api_url", None)
    notify = (lambda org: f"{api.rstrip('/')}/v1/channels/{org}/callback") if api else None
    queue = TaskQueue(
        core.db,
        core.ids,
        clock=core.clock,
        worker_id=worker_id or default_worker_id(),
        **queue_options,
    )
    guarded = None if gateway is None else GuardedGateway(gateway, core.guard, "job.compensation")
    handlers = Handlers(core, guarded, notify_url_for=notify)
    return Worker(core, queue, handlers, batch=batch, stop_event=stop_event)


def run_worker(
    platform: Any,
    stop_event: threading.Event | None = None,
    *,
    extra_jobs: Sequence[ExtraJob] = (),
    worker_id: str | None = None,
    batch: int = 50,
    install_signals: bool = True,
) -> int:
    """Run the worker's scheduler until ``stop_event`` is set or SIGTERM/SIGINT arrives.

    Shutdown stops claiming, hands unstarted tasks back, and waits for running jobs.
    Returns 0 (an exit code for the CLI).
    """
    stop = stop_event or threading.Event()
    worker = build_worker(platform, worker_id=worker_id, batch=batch, stop_event=stop)
    obs = getattr(platform, "observability", None)
    scheduler = build_scheduler(worker, extra_jobs, job_metrics=getattr(obs, "jobs", None))
    previous: dict[signal.Signals, Any] = {}
    if install_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    log.info("worker %s starting (%d jobs)", worker.queue.worker_id, len(scheduler.get_jobs()))
    scheduler.start()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        stop.set()
        scheduler.shutdown(wait=True)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("worker %s stopped: %s", worker.queue.worker_id, worker.counts)
    return 0
