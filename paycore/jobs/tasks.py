"""The compensation table: a generic queue of retryable tasks, safe for many workers.

A task is ``(kind, biz_key)``-unique, carries a JSON payload and moves through
``pending → running → done | failed | manual``. Workers *claim* due tasks with a lease
(``locked_by`` + ``lease_until``): on PostgreSQL with ``FOR UPDATE SKIP LOCKED`` so any
number of workers take disjoint batches; on SQLite the engine's ``BEGIN IMMEDIATE``
serialises the claims. A task whose worker died is claimed again once its lease has
passed. Only system failures are retried (exponential backoff with jitter); a definite
business failure ends the task (``failed``); after ``max_attempts`` the task is handed
to a human (``manual``).

Completing, failing and retrying are guarded by ``locked_by = me AND status = 'running'``
so a worker whose lease expired cannot overwrite the result of the worker that took the
task over. Handlers must still be idempotent: a worker can die after the effect and
before recording it, and the task then runs again. A handler whose whole effect is in
the database can pass its session to :meth:`TaskQueue.complete`, which records the
completion in the same transaction (exactly once; :class:`LeaseLost` rolls it back).

Times come from the injected ``clock`` (UTC): workers on several machines need clocks
in sync to well within ``lease_s``.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from ..db.engine import Database
from ..db.schema import CompensationTask
from ..db.util import insert_ignore
from ..errors import LeaseLost, NotFound, WrongState
from ..ids import IdGenerator

PENDING, RUNNING, DONE, FAILED, MANUAL = "pending", "running", "done", "failed", "manual"
STATUSES = (PENDING, RUNNING, DONE, FAILED, MANUAL)
T = CompensationTask
_ERR_MAX = 2000
_NOTE_MAX = 4000


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_worker_id() -> str:
    """``host:pid:random``, unique per process and at most 64 characters."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(slots=True)
class Task:
    """A snapshot of one compensation task, as claimed or listed."""

    id: int
    kind: str
    biz_key: str
    merchant_id: str
    payload: dict[str, Any]
    status: str
    attempts: int
    max_attempts: int
    next_run_at: datetime
    lease_until: datetime | None
    locked_by: str | None
    last_error: str
    note: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Any) -> Task:
        values = {f.name: getattr(row, f.name) for f in fields(cls) if f.name != "payload"}
        return cls(payload=json.loads(row.payload or "{}"), **values)


TaskList = list[Task]


class TaskQueue:
    """Enqueue, claim and settle compensation tasks on one :class:`Database`."""

    def __init__(
        self,
        db: Database,
        ids: IdGenerator,
        *,
        clock: Callable[[], datetime] = utcnow,
        worker_id: str | None = None,
        lease_s: float = 30.0,
        base_backoff_s: float = 5.0,
        max_backoff_s: float = 3600.0,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.ids = ids
        self.clock = clock
        self.worker_id = (worker_id or default_worker_id())[:64]
        self.lease_s = lease_s
        self.base_backoff_s = base_backoff_s
        self.max_backoff_s = max_backoff_s
        self._rng = rng or random.Random()
        #: called (after commit) for each task ``claim`` moved to manual; the worker sets it
        self.on_manual: Callable[[Task, str], None] | None = None

    # -- producing -------------------------------------------------------------------------
    def enqueue(
        self,
        session: Session | None,
        kind: str,
        biz_key: str,
        payload: dict[str, Any],
        merchant_id: str = "",
        max_attempts: int = 8,
        run_at: datetime | None = None,
    ) -> bool:
        """Add a task unless ``(kind, biz_key)`` exists; True if this call added it.

        Pass the caller's session to enqueue inside its transaction (the task then exists
        exactly when the business change commits); ``None`` uses a transaction of its own.
        """
        now = self.clock()
        values = {
            "id": self.ids.next_id(),
            "kind": kind,
            "biz_key": biz_key,
            "merchant_id": merchant_id,
            "status": PENDING,
            "attempts": 0,
            "payload": json.dumps(payload, sort_keys=True, separators=(",", ":")),
            "max_attempts": max_attempts,
            "next_run_at": run_at or now,
            "lease_until": None,
            "locked_by": None,
            "last_error": "",
            "note": "",
            "created_at": now,
            "updated_at": now,
        }
        if session is not None:
            return insert_ignore(session, T.__table__, values)
        return self.db.run(lambda s: insert_ignore(s, T.__table__, values))

    # -- claiming --------------------------------------------------------------------------
    def claim(self, limit: int, kinds: Sequence[str] | None = None) -> TaskList:
        """Lease up to ``limit`` due tasks to this worker (attempts + 1) and return them.

        Due: pending with ``next_run_at <= now``, or running with an expired lease (its
        worker died). A task whose lease expired after its last allowed attempt is moved
        to ``manual`` instead of running again (a task that kills its worker every time
        must not loop forever).
        """
        if limit <= 0:
            return []

        def work(s: Session) -> tuple[TaskList, TaskList]:
            now = self.clock()
            due = or_(
                and_(T.status == PENDING, T.next_run_at <= now),
                and_(T.status == RUNNING, T.lease_until < now),
            )
            stmt = select(T.id, T.status, T.attempts, T.max_attempts).where(due)
            if kinds is not None:
                stmt = stmt.where(T.kind.in_(list(kinds)))
            stmt = stmt.order_by(T.next_run_at).limit(limit)
            if self.db.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True)
            rows = s.execute(stmt).all()
            dead = {r.id for r in rows if r.status == RUNNING and r.attempts >= r.max_attempts}
            if dead:
                why = "lease expired on the last attempt (did the worker die?)"
                self._set(
                    s, list(dead), status=MANUAL, lease_until=None, locked_by=None, last_error=why
                )
            ids = [r.id for r in rows if r.id not in dead]
            if ids:
                self._set(
                    s,
                    ids,
                    status=RUNNING,
                    locked_by=self.worker_id,
                    lease_until=now + timedelta(seconds=self.lease_s),
                    attempts=T.attempts + 1,
                )
            got = s.execute(select(T).where(T.id.in_([r.id for r in rows]))).scalars()
            snaps = sorted((Task.from_row(r) for r in got), key=lambda t: (t.next_run_at, t.id))
            return [t for t in snaps if t.id not in dead], [t for t in snaps if t.id in dead]

        claimed, given_up = self.db.run(work)
        if given_up and self.on_manual is not None:
            for task in given_up:
                self.on_manual(task, task.last_error)
        return claimed

    def extend(self, tasks: Iterable[Task]) -> TaskList:
        """Renew the lease of ``tasks``; returns those still ours (with the new lease)."""
        mine = {t.id: t for t in tasks}
        if not mine:
            return []

        def work(s: Session) -> TaskList:
            until = self.clock() + timedelta(seconds=self.lease_s)
            kept = (
                s.execute(
                    update(T)
                    .where(self._ours(list(mine)))
                    .values(lease_until=until)
                    .returning(T.id)
                    .execution_options(synchronize_session=False)
                )
                .scalars()
                .all()
            )
            for task_id in kept:
                mine[task_id].lease_until = until
            return [mine[i] for i in kept]

        return self.db.run(work)

    def release(self, tasks: Iterable[Task]) -> int:
        """Hand claimed but unstarted tasks back at once (on shutdown), attempt refunded."""
        ids = [t.id for t in tasks]
        if not ids:
            return 0
        return self.db.run(
            lambda s: self._guarded(
                s, ids, status=PENDING, lease_until=None, locked_by=None, attempts=T.attempts - 1
            )
        )

    # -- settling --------------------------------------------------------------------------
    def complete(self, task: Task, session: Session | None = None) -> bool:
        """Mark ``task`` done if we still hold it; False if its lease passed to another.

        With ``session`` (the handler's own transaction) a lost lease raises
        :class:`LeaseLost` instead, so the handler's effect is rolled back with it.
        """
        values = {"status": DONE, "lease_until": None, "last_error": ""}
        if session is not None:
            if not self._guarded(session, [task.id], **values):
                raise LeaseLost("the task's lease passed to another worker", task_id=task.id)
            return True
        return bool(self.db.run(lambda s: self._guarded(s, [task.id], **values)))

    def fail_business(self, task: Task, error: str) -> bool:
        """A definite business failure: the task ends ``failed`` and is not retried."""
        values = {"status": FAILED, "lease_until": None, "last_error": error[:_ERR_MAX]}
        return bool(self.db.run(lambda s: self._guarded(s, [task.id], **values)))

    def retry(self, task: Task, error: str) -> str | None:
        """A system failure: back off and retry, or ``manual`` after the last attempt.

        Returns the new status, or None when the lease had passed to another worker.
        """
        if task.attempts >= task.max_attempts:
            values: dict[str, Any] = {"status": MANUAL, "lease_until": None}
        else:
            delay = self.backoff_s(task.attempts)
            values = {
                "status": PENDING,
                "lease_until": None,
                "locked_by": None,
                "next_run_at": self.clock() + timedelta(seconds=delay),
            }
        values["last_error"] = error[:_ERR_MAX]
        done = self.db.run(lambda s: self._guarded(s, [task.id], **values))
        return str(values["status"]) if done else None

    def defer(self, task: Task, error: str, delay_s: float) -> bool:
        """Not a failure: the call was kept away on purpose (a switch, an open breaker, a
        full bulkhead). Back to pending after ``delay_s`` with the attempt given back, so
        a channel degraded for an hour sends nothing to manual. False when the lease
        had passed to another worker."""
        values = {
            "status": PENDING,
            "lease_until": None,
            "locked_by": None,
            "attempts": T.attempts - 1,
            "next_run_at": self.clock() + timedelta(seconds=delay_s),
            "last_error": error[:_ERR_MAX],
        }
        return bool(self.db.run(lambda s: self._guarded(s, [task.id], **values)))

    def backoff_s(self, attempts: int) -> float:
        """``min(max, base · 2^(attempts−1)) × jitter``, jitter uniform in [0.5, 1.5)."""
        exp = min(max(attempts - 1, 0), 62)
        return min(self.max_backoff_s, self.base_backoff_s * 2.0**exp) * self._rng.uniform(0.5, 1.5)

    # -- the console's manual entry --------------------------------------------------------
    def manual_retry_now(self, task_id: int, actor: str, note: str = "") -> Task:
        """Run a pending, failed or manual task again as soon as a worker is free.

        It gets at least one more attempt; a task being run or done is refused.
        """

        def change(row: CompensationTask) -> dict[str, Any]:
            if row.status in (RUNNING, DONE):
                raise WrongState(f"task is {row.status}; it cannot be retried now")
            return {
                "status": PENDING,
                "next_run_at": self.clock(),
                "lease_until": None,
                "locked_by": None,
                "max_attempts": max(row.max_attempts, row.attempts + 1),
                "note": self._note(row, "retry", actor, note),
            }

        return self._manual(task_id, change)

    def resolve_manually(self, task_id: int, actor: str, note: str = "") -> Task:
        """A human settled the matter outside the system: the task ends ``done``."""

        def change(row: CompensationTask) -> dict[str, Any]:
            if row.status in (RUNNING, DONE):
                raise WrongState(f"task is {row.status}; it cannot be resolved by hand now")
            return {
                "status": DONE,
                "lease_until": None,
                "locked_by": None,
                "note": self._note(row, "resolved", actor, note),
            }

        return self._manual(task_id, change)

    # -- reading ---------------------------------------------------------------------------
    def get(self, task_id: int) -> Task | None:
        with self.db.session() as s:
            row = s.get(T, task_id)
            return Task.from_row(row) if row is not None else None

    def backlog(self) -> dict[str, int]:
        """Task count per status (every status present, zero when none)."""
        with self.db.session() as s:
            rows = s.execute(select(T.status, func.count()).group_by(T.status)).all()
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({str(st): int(n) for st, n in rows})
        return counts

    # -- internals -------------------------------------------------------------------------
    def _ours(self, ids: list[int]) -> Any:
        return and_(T.id.in_(ids), T.locked_by == self.worker_id, T.status == RUNNING)

    def _guarded(self, s: Session, ids: list[int], **values: Any) -> int:
        """Update the tasks of ``ids`` this worker still holds; returns how many."""
        result = s.execute(
            update(T)
            .where(self._ours(ids))
            .values(updated_at=self.clock(), **values)
            .execution_options(synchronize_session=False)
        )
        return int(result.rowcount)  # type: ignore[attr-defined]

    def _set(self, s: Session, ids: list[int], **values: Any) -> None:
        s.execute(
            update(T)
            .where(T.id.in_(ids))
            .values(updated_at=self.clock(), **values)
            .execution_options(synchronize_session=False)
        )

    def _manual(self, task_id: int, change: Callable[[CompensationTask], dict[str, Any]]) -> Task:
        def work(s: Session) -> Task:
            stmt = select(T).where(T.id == task_id)
            if self.db.is_postgres:
                stmt = stmt.with_for_update()
            row = s.execute(stmt).scalar_one_or_none()
            if row is None:
                raise NotFound("no such compensation task", task_id=task_id)
            self._set(s, [task_id], **change(row))
            s.expire_all()
            return Task.from_row(s.get_one(T, task_id))

        return self.db.run(work)

    def _note(self, row: CompensationTask, action: str, actor: str, note: str) -> str:
        line = f"[{self.clock():%Y-%m-%dT%H:%M:%SZ}] {action} by {actor[:64]}: {note[:500]}"
        return (f"{row.note}\n{line}" if row.note else line)[-_NOTE_MAX:]

    def list(
        self, status: str | None = None, kind: str | None = None, limit: int = 100
    ) -> TaskList:
        """Tasks, most recently changed first, optionally of one status and/or kind."""
        stmt = select(T).order_by(T.updated_at.desc(), T.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(T.status == status)
        if kind is not None:
            stmt = stmt.where(T.kind == kind)
        with self.db.session() as s:
            return [Task.from_row(r) for r in s.execute(stmt).scalars()]
