"""The worker: claim compensation tasks, run their handlers, record the outcome.

:class:`Worker` is the loop body. The schedule it runs on, with the rest of the
worker's jobs, is put together by ``runtime.worker`` (``paywatch worker``). Nothing here
starts at import time.

Any number of workers may run side by side: claims are disjoint (see
:mod:`paycore.jobs.tasks`), and jobs that must run once across all of them go through
:func:`paycore.jobs.leases.singleton_job`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ..channels.errors import ChannelRefused
from .handlers import BusinessFailure, Handlers
from .tasks import FAILED, MANUAL, LeaseLost, Task, TaskQueue

if TYPE_CHECKING:
    from ..core import PayCore

log = logging.getLogger(__name__)
ExtraJob = tuple[Callable[[], Any], float, str]  # (callable, interval seconds, name)
OUTCOMES = ("done", "retried", "deferred", "failed", "manual", "lost")


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
        refused_delay_s: float = 30.0,
    ) -> None:
        self.core = core
        self.refused_delay_s = refused_delay_s  # a guard refusal is asked again this late
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
        except ChannelRefused as e:  # kept away by the guard: wait, spend no attempt
            if not self.queue.defer(task, describe(e), self.refused_delay_s):
                return self._count("lost")
            log.info("task %s (%s) deferred: %s", task.id, task.kind, describe(e))
            return self._count("deferred")
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
