"""Operations reads: compensation queue, notification backlog, manual items and the
four-eyes actions proposed on them (:class:`~paycore.manual_actions.ManualActions`).

Plain SQL over the pay core's tables. Compensation retries and notification resends go
through the pay core's own :class:`~paycore.jobs.tasks.TaskQueue` and
:class:`~paycore.notify.delivery.NotificationDelivery`; what each picker may offer is
:data:`ACTIONABLE_TASKS` and :data:`RESENDABLE`.

Reconciliation (:mod:`console.reports.recon`) and the pages' plain helpers
(:mod:`console.reports.page_helpers`) are importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from console.reports.page_helpers import (  # noqa: F401 - re-exported
    big_ints_as_text,
    flash,
    ids_as_text,
    take_flash,
)
from console.reports.recon import (  # noqa: F401 - re-exported
    DifferenceRow,
    RunRow,
    configured_pay_orgs,
    difference_kinds,
    parse_statement_csv,
    recon_differences,
    recon_runs,
    reconcile_statement,
    resolve_difference,
)
from paycore import Database
from paycore.db.schema import CompensationTask, Notification, NotificationAttempt, PayItem


@dataclass(frozen=True, slots=True)
class TaskRow:
    id: int
    kind: str
    biz_key: str
    merchant_id: str
    status: str
    attempts: int
    max_attempts: int
    next_run_at: datetime
    last_error: str
    note: str
    updated_at: datetime


def compensation_rows(
    db: Database, *, status: str | None = None, kind: str | None = None, limit: int = 200
) -> list[TaskRow]:
    """Compensation tasks, most recently changed first, optionally filtered."""
    T = CompensationTask
    stmt = select(T).order_by(T.updated_at.desc(), T.id.desc()).limit(limit)
    if status:
        stmt = stmt.where(T.status == status)
    if kind:
        stmt = stmt.where(T.kind == kind)
    return _task_rows(db, stmt)


def _task_rows(db: Database, stmt: Any) -> list[TaskRow]:
    with db.session() as s:
        return [
            TaskRow(
                r.id,
                r.kind,
                r.biz_key,
                r.merchant_id,
                r.status,
                r.attempts,
                r.max_attempts,
                r.next_run_at,
                r.last_error,
                r.note,
                r.updated_at,
            )
            for r in s.execute(stmt).scalars()
        ]


#: task statuses a console action (retry now, resolve by hand) applies to; ``running``
#: and ``done`` tasks are refused by :class:`~paycore.jobs.tasks.TaskQueue`
ACTIONABLE_TASKS = ("pending", "failed", "manual")


def actionable_tasks(
    db: Database, *, status: str | None = None, kind: str | None = None, limit: int = 200
) -> list[TaskRow]:
    """The tasks an operator can act on (in :data:`ACTIONABLE_TASKS`), within the filter
    ``status``/``kind`` (a filter on a status that is not actionable gives none)."""
    statuses = [s for s in ACTIONABLE_TASKS if status in (None, s)]
    if not statuses:
        return []
    T = CompensationTask
    stmt = (
        select(T)
        .where(T.status.in_(statuses))
        .order_by(T.updated_at.desc(), T.id.desc())
        .limit(limit)
    )
    if kind:
        stmt = stmt.where(T.kind == kind)
    return _task_rows(db, stmt)


def compensation_kinds(db: Database) -> list[str]:
    with db.session() as s:
        return sorted(str(k) for k in s.execute(select(CompensationTask.kind).distinct()).scalars())


@dataclass(frozen=True, slots=True)
class AttemptRow:
    at: datetime
    status_code: int | None
    error: str
    duration_ms: int


@dataclass(frozen=True, slots=True)
class NotificationRow:
    id: int
    event_id: str
    merchant_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime
    last_status_code: int | None
    last_error: str
    created_at: datetime
    history: list[AttemptRow] = field(default_factory=list)


def notification_rows(
    db: Database, *, statuses: tuple[str, ...] = ("pending", "gave_up"), limit: int = 200
) -> list[NotificationRow]:
    """Undelivered notifications (pending or given up by default), oldest due first,
    each with its delivery attempts (oldest first)."""
    N, A = Notification, NotificationAttempt
    stmt = (
        select(N).where(N.status.in_(list(statuses))).order_by(N.next_attempt_at, N.id).limit(limit)
    )
    with db.session() as s:
        rows = list(s.execute(stmt).scalars())
        history: dict[int, list[AttemptRow]] = {}
        ids = [r.id for r in rows]
        if ids:
            q = select(A).where(A.notification_id.in_(ids)).order_by(A.at, A.id)
            for a in s.execute(q).scalars():
                history.setdefault(a.notification_id, []).append(
                    AttemptRow(a.at, a.status_code, a.error, a.duration_ms)
                )
        return [
            NotificationRow(
                r.id,
                r.event_id,
                r.merchant_id,
                r.event_type,
                r.status,
                r.attempts,
                r.next_attempt_at,
                r.last_status_code,
                r.last_error,
                r.created_at,
                history.get(r.id, []),
            )
            for r in rows
        ]


#: notification statuses a manual resend applies to: given up, or delivered and asked
#: for again; ``pending`` ones are on the worker's schedule already
RESENDABLE = ("gave_up", "delivered")


def resend_notification(db: Database, delivery: Any, notification_id: int, actor: str) -> bool:
    """Resend one notification if it is (still) :data:`RESENDABLE`; ValueError if not."""
    with db.session() as s:
        stmt = select(Notification.status).where(Notification.id == notification_id)
        status = s.execute(stmt).scalar_one_or_none()
    if status is None:
        raise ValueError(f"notification {notification_id} does not exist")
    if status not in RESENDABLE:
        raise ValueError(
            f"notification {notification_id} is {status}; only given-up or "
            "delivered notifications are resent by hand"
        )
    return bool(delivery.resend(notification_id, actor))


@dataclass(frozen=True, slots=True)
class ManualItemRow:
    id: int
    pay_order_id: int
    merchant_id: str
    tool: str
    status: str
    amount: int
    pay_org_no: str | None
    channel_txn_no: str | None
    query_attempts: int
    created_at: datetime
    finished_at: datetime | None


def manual_items(db: Database, *, limit: int = 200) -> list[ManualItemRow]:
    """Pay items handed to a human (``pay_items.manual``), oldest first."""
    P = PayItem
    stmt = select(P).where(P.manual.is_(True)).order_by(P.created_at, P.id).limit(limit)
    with db.session() as s:
        return [
            ManualItemRow(
                r.id,
                r.pay_order_id,
                r.merchant_id,
                r.tool,
                r.status,
                r.amount,
                r.pay_org_no,
                r.channel_txn_no,
                r.query_attempts,
                r.created_at,
                r.finished_at,
            )
            for r in s.execute(stmt).scalars()
        ]


def actionable_manual_items(db: Database, *, limit: int = 200) -> list[ManualItemRow]:
    """Manual items an action may settle: still ``processing`` (a settled one has
    nothing left to decide)."""
    return [r for r in manual_items(db, limit=limit) if r.status == "processing"]


def manual_actions_service(core: Any) -> Any:
    """The pay core's :class:`~paycore.manual_actions.ManualActions` (settling through its
    payments service, as a callback would)."""
    from paycore.manual_actions import ManualActions

    return ManualActions(core.deps, core.payments.on_channel_result)
