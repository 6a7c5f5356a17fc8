"""Singleton jobs: a named lease in ``job_leases`` that one holder at a time may hold.

Every worker runs the same schedule; a job that must run once across all of them (one
day's reconciliation of a pay org, a trial balance) first takes the lease named after
it, e.g. ``f"recon:{org}:{day}"``. Taking it is one atomic upsert on both backends::

    INSERT … ON CONFLICT (name) DO UPDATE SET holder = :me, until = :until
        WHERE job_leases.until < :now OR job_leases.holder = :me
    RETURNING name

so of two workers racing for a free (or expired) lease exactly one gets a row back.
The holder may renew its own lease by acquiring again. A lease outlives a crashed
holder only until ``until``; jobs longer than their ttl should renew, and should be
resumable anyway (e.g. a reconciliation run keyed by pay org and day), because a lease
is a guard against running twice *at the same time*, not a record that a job ran:
use ``keep=True`` to also keep others out for the rest of the ttl after finishing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..db.engine import Database
from ..db.schema import JobLease

log = logging.getLogger(__name__)
R = TypeVar("R")


def utcnow() -> datetime:
    return datetime.now(UTC)


class JobLeases:
    """Named, expiring leases shared by every worker on one database."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        self.db = db
        self.clock = clock

    def acquire(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take (or renew) lease ``name`` for ``ttl_s`` seconds; False if another holds it."""
        now = self.clock()
        values = {"name": name, "holder": holder, "until": now + timedelta(seconds=ttl_s)}
        ins: Any = (postgresql if self.db.is_postgres else sqlite).insert(JobLease).values(values)
        stmt = ins.on_conflict_do_update(
            index_elements=[JobLease.name],
            set_={"holder": ins.excluded.holder, "until": ins.excluded.until},
            where=or_(JobLease.until < now, JobLease.holder == holder),
        ).returning(JobLease.name)

        def work(s: Session) -> bool:
            return s.execute(stmt).first() is not None

        return self.db.run(work)

    def release(self, name: str, holder: str) -> bool:
        """Give lease ``name`` up if ``holder`` holds it; True if it did."""

        def work(s: Session) -> bool:
            result = s.execute(
                delete(JobLease).where(JobLease.name == name, JobLease.holder == holder)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

        return self.db.run(work)

    def holder_of(self, name: str) -> tuple[str, datetime] | None:
        """``(holder, until)`` of a lease that has not expired, else None."""
        with self.db.session() as s:
            row = s.execute(
                select(JobLease.holder, JobLease.until).where(
                    JobLease.name == name, JobLease.until >= self.clock()
                )
            ).first()
        return (row.holder, row.until) if row is not None else None

    @contextmanager
    def singleton(
        self, name: str, holder: str, ttl_s: float, *, keep: bool = False
    ) -> Iterator[bool]:
        """Hold lease ``name`` for the block; yields whether this holder got it.

        Usage: ``with leases.singleton("recon:A:2024-05-01", me, 600) as mine:
        if mine: run()``. The lease is released afterwards unless ``keep``.
        """
        mine = self.acquire(name, holder, ttl_s)
        try:
            yield mine
        finally:
            if mine and not keep:
                try:
                    self.release(name, holder)
                except Exception:  # noqa: BLE001 - it expires by itself; never mask the job's error
                    log.warning("could not release job lease %s", name, exc_info=True)

    def run_once(
        self, name: str, holder: str, ttl_s: float, fn: Callable[[], R], *, keep: bool = False
    ) -> tuple[bool, R | None]:
        """Run ``fn`` if this holder gets lease ``name``; returns ``(ran, result)``."""
        with self.singleton(name, holder, ttl_s, keep=keep) as mine:
            if not mine:
                return False, None
            return True, fn()


def singleton_job(
    leases: JobLeases,
    name: str | Callable[[], str],
    holder: str,
    ttl_s: float,
    fn: Callable[[], Any],
    *,
    keep: bool = False,
) -> Callable[[], Any]:
    """A scheduler job that runs ``fn`` on one worker at a time across all workers.

    ``name`` may be a callable evaluated at each run, e.g.
    ``lambda: f"recon:A:{yesterday()}"`` so that each day gets its own lease.
    """

    def job() -> Any:
        lease = name() if callable(name) else name
        ran, result = leases.run_once(lease, holder, ttl_s, fn, keep=keep)
        if not ran:
            log.debug("singleton job %s is held by another worker; skipped", lease)
        return result

    job.__name__ = f"singleton_{getattr(fn, '__name__', 'job')}"
    return job
