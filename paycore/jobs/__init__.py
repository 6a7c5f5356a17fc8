"""Background jobs of the pay core: the compensation table, its worker, singleton leases.

Public API::

    TaskQueue(db, ids, *, clock, worker_id, lease_s=30, base_backoff_s=5, max_backoff_s=3600)
    Handlers(core, gateway=None, *, notify_url_for=None)   # kind -> handler registry
    Worker(core, queue, handlers, *, batch=50)              # run_once(), tick()

The schedule and the rest of the job list are ``runtime.worker``'s.
    JobLeases(db, clock) / singleton_job(...)                # run once across workers

Importing this package starts nothing (no thread, scheduler or connection).
"""

from .handlers import (
    EXCEPTION_REFUND,
    LEDGER_POSTING,
    STUCK_CHANNEL_CALL,
    Handlers,
    channel_request_payload,
    ledger_posting_payload,
    refund_txn_no,
)
from .leases import JobLeases, singleton_job
from .tasks import LeaseLost, TaskQueue
from .worker import Worker

__all__ = [
    "EXCEPTION_REFUND",
    "LEDGER_POSTING",
    "STUCK_CHANNEL_CALL",
    "Handlers",
    "JobLeases",
    "LeaseLost",
    "TaskQueue",
    "Worker",
    "channel_request_payload",
    "ledger_posting_payload",
    "refund_txn_no",
    "singleton_job",
]
