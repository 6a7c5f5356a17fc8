"""The worker: claim compensation tasks, run their handlers, record the outcome.

:class:`Worker` is the loop body; :func:`build_scheduler` puts it (and other periodic
jobs) on an APScheduler ``BackgroundScheduler``; :func:`run_worker` is what
``paywatch worker`` runs: build, start, wait for SIGTERM/SIGINT (or a stop event),
shut down cleanly. Nothing here starts at import time.

Any number of workers may run side by side: claims are disjoint (see
:mod:`paycore.jobs.tasks`), and jobs that must run once across all of them go through
:func:`paycore.jobs.leases.singleton_job`.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from .handlers import BusinessFailure, Handlers
from .tasks import FAILED, MANUAL, LeaseLost, Task, TaskQueue, default_worker_id

if TYPE_CHECKING:
    from apscheduler.schedulers.base import BaseScheduler

    from ..core import PayCore

log = logging.getLogger(__name__)
ExtraJob = tuple[Callable[[], Any], float, str]  # (callable, interval seconds, name)
OUTCOMES = ("done", "retried", "failed", "manual", "lost")


def describe(error: BaseException) -> str:
    """An error for ``last_error``: class and message (pay core messages hold no secrets)."""
    code = getattr(error, "code", None)
    return f"{type(error).__name__}{f' [{code}]' if code else ''}: {error}"


class Worker:
    """Runs compensation tasks in batches.

    ``concurrency`` > 1 runs a batch's handlers on that many threads (for handlers that
    wait on a channel); a lease about to run out is renewed before a task starts.
    """

    def __init__(
        self,
        core: PayCore,
        queue: TaskQueue,
        handlers: Handlers,
        *,
        batch: int = 50,
        concurrency: int = 1,
        drain_budget_s: float = 10.0,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.core = core
        self.queue = queue
        self.handlers = handlers
        self.batch = batch
        self.concurrency = max(1, concurrency)
        self.drain_budget_s = drain_budget_s
        self.stop_event = stop_event or threading.Event()
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self._lock = threading.Lock()
        handlers.bind(queue)
        queue.on_manual = lambda task, error: self._gave_up(task, MANUAL, error)

    def run_once(self) -> int:
        """Claim one batch and run it; returns how many tasks were claimed."""
        tasks = self.queue.claim(self.batch, kinds=self.handlers.kinds)
        if not tasks:
            return 0
        if self.concurrency == 1:
            for i, task in enumerate(tasks):
                if self.stop_event.is_set():
                    self.queue.release(tasks[i:])  # unstarted: back to the queue at once
                    break
                self._run(task)
        else:
            with ThreadPoolExecutor(self.concurrency, thread_name_prefix="compensation") as pool:
                list(pool.map(self._run_unless_stopping, tasks))
        return len(tasks)

    def tick(self) -> int:
        """Run batches until the queue has no due task or the time budget is spent."""
        total, deadline = 0, time.monotonic() + self.drain_budget_s
        while not self.stop_event.is_set():
            n = self.run_once()
            total += n
            if n < self.batch or time.monotonic() > deadline:
                break
        return total

    def run_until_stopped(self, idle_sleep_s: float = 0.2) -> None:
        """Loop :meth:`tick` until the stop event is set (tests, benches, simple workers)."""
        while not self.stop_event.is_set():
            try:
                busy = self.tick()
            except Exception:  # noqa: BLE001 - a database outage must not end the loop
                log.exception("compensation tick failed")
                busy = 0
            if not busy:
                self.stop_event.wait(idle_sleep_s)

    # -- one task --------------------------------------------------------------------------
    def _run_unless_stopping(self, task: Task) -> None:
        if self.stop_event.is_set():
            self.queue.release([task])
        else:
            self._run(task)

    def _run(self, task: Task) -> str:
        if not self._lease_ok(task):
            return self._count("lost")
        try:
            completed = self.handlers.run(task)
        except LeaseLost:
            log.warning("task %s (%s): lease lost while running", task.id, task.kind)
            return self._count("lost")
        except BusinessFailure as e:
            error = describe(e)
            if not self.queue.fail_business(task, error):
                return self._count("lost")
            log.warning("task %s (%s %s) failed: %s", task.id, task.kind, task.biz_key, error)
            self._gave_up(task, FAILED, error)
            return self._count("failed")
        except Exception as e:  # noqa: BLE001 - anything else is a system failure: retry
            error = describe(e)
            status = self.queue.retry(task, error)
            if status is None:
                return self._count("lost")
            if status == MANUAL:
                log.error(
                    "task %s (%s %s) handed to manual after %d attempts: %s",
                    task.id,
                    task.kind,
                    task.biz_key,
                    task.attempts,
                    error,
                )
                self._gave_up(task, MANUAL, error)
                return self._count("manual")
            log.info(
                "task %s (%s) attempt %d failed, will retry: %s",
                task.id,
                task.kind,
                task.attempts,
                error,
            )
            return self._count("retried")
        if completed or self.queue.complete(task):
            return self._count("done")
        return self._count("lost")

    def _lease_ok(self, task: Task) -> bool:
        """Renew the lease first when less than a third of it is left."""
        margin = timedelta(seconds=self.queue.lease_s / 3)
        if task.lease_until is None or self.queue.clock() + margin < task.lease_until:
            return True
        return bool(self.queue.extend([task]))

    def _gave_up(self, task: Task, status: str, error: str) -> None:
        try:
            self.handlers.gave_up(task, status, error)
        except Exception:  # noqa: BLE001 - the task's own state is recorded; log and go on
            log.exception("give-up hook of task %s (%s) failed", task.id, task.kind)

    def _count(self, outcome: str) -> str:
        with self._lock:
            self.counts[outcome] += 1
        return outcome


def build_scheduler(
    worker: Worker,
    extra_jobs: Sequence[ExtraJob] = (),
    *,
    blocking: bool = False,
    compensation_every_s: float = 1.0,
    exceptions_every_s: float = 5.0,
) -> BaseScheduler:
    """A scheduler (not started) with the compensation jobs and ``extra_jobs``.

    Jobs: ``compensation`` (:meth:`Worker.tick`), ``exception_scan``
    (:meth:`Handlers.enqueue_open_exceptions`), then each ``(fn, seconds, name)`` of
    ``extra_jobs``. Every job has ``max_instances=1, coalesce=True``: a slow run is never
    overlapped by the next, and missed runs collapse into one.
    """
    from apscheduler.schedulers.background import BackgroundScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler

    cls = BlockingScheduler if blocking else BackgroundScheduler
    scheduler = cls(
        timezone=UTC, job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 60}
    )
    jobs: list[ExtraJob] = [
        (worker.tick, compensation_every_s, "compensation"),
        (worker.handlers.enqueue_open_exceptions, exceptions_every_s, "exception_scan"),
        *extra_jobs,
    ]
    for fn, seconds, name in jobs:
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
    """A :class:`Worker` over a platform (``console.bootstrap.Platform`` or alike).

    Uses ``platform.paycore``; the channel gateway of ``platform.front`` (if any) for
    channel refunds and re-sends; callbacks go to ``platform.settings.api_url``.
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
    handlers = Handlers(core, gateway, notify_url_for=notify)
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
    scheduler = build_scheduler(worker, extra_jobs)
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
