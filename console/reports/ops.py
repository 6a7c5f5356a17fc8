"""Operations reads: compensation queue, notification backlog, reconciliation, manual items.

Plain SQL over the pay core's tables; the writes here are :func:`resolve_difference` (a
reconciliation difference settled by a human) and :func:`reconcile_statement` (an
uploaded statement reconciled, pay org and day checked first). Compensation retries and
notification resends go through the pay core's own :class:`~paycore.jobs.tasks.TaskQueue`
and :class:`~paycore.notify.delivery.NotificationDelivery`.

Also the pages' plain helpers (no Streamlit here): :func:`ids_as_text` (64-bit ids as
strings, so a browser never rounds them through a JavaScript number), what each picker
may offer (:data:`ACTIONABLE_TASKS`, :data:`RESENDABLE`) and :func:`flash` /
:func:`take_flash` (a confirmation kept across the rerun that refreshes a page).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update

from paycore import Database
from paycore.db.schema import (
    CompensationTask,
    Notification,
    NotificationAttempt,
    PayItem,
    ReconDifference,
    ReconRun,
)

_NOTE_MAX = 4000


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
class RunRow:
    id: int
    kind: str
    pay_org_no: str
    day: str
    status: str
    cursor: int
    stats: dict[str, Any]
    started_at: datetime
    finished_at: datetime | None


def recon_runs(
    db: Database,
    *,
    kind: str | None = None,
    pay_org_no: str | None = None,
    day: str | None = None,
    status: str | None = None,
    limit: int = 200,
) -> list[RunRow]:
    """Reconciliation runs, newest first, optionally filtered."""
    R = ReconRun
    stmt = select(R).order_by(R.started_at.desc(), R.id.desc()).limit(limit)
    for col, value in (
        (R.kind, kind),
        (R.pay_org_no, pay_org_no),
        (R.day, day),
        (R.status, status),
    ):
        if value:
            stmt = stmt.where(col == value)
    with db.session() as s:
        return [
            RunRow(
                r.id,
                r.kind,
                r.pay_org_no,
                r.day,
                r.status,
                r.cursor,
                json.loads(r.stats or "{}"),
                r.started_at,
                r.finished_at,
            )
            for r in s.execute(stmt).scalars()
        ]


@dataclass(frozen=True, slots=True)
class DifferenceRow:
    id: int
    run_id: int
    kind: str
    pay_org_no: str
    day: str
    ref: str
    our_amount: int | None
    channel_amount: int | None
    our_status: str
    channel_status: str
    resolution: str
    status: str
    note: str
    created_at: datetime


def recon_differences(
    db: Database,
    *,
    status: str | None = None,
    kind: str | None = None,
    pay_org_no: str | None = None,
    day: str | None = None,
    limit: int = 500,
) -> list[DifferenceRow]:
    """Reconciliation differences, newest first, optionally filtered."""
    D = ReconDifference
    stmt = select(D).order_by(D.created_at.desc(), D.id.desc()).limit(limit)
    for col, value in (
        (D.status, status),
        (D.kind, kind),
        (D.pay_org_no, pay_org_no),
        (D.day, day),
    ):
        if value:
            stmt = stmt.where(col == value)
    with db.session() as s:
        return [
            DifferenceRow(
                r.id,
                r.run_id,
                r.kind,
                r.pay_org_no,
                r.day,
                r.ref,
                r.our_amount,
                r.channel_amount,
                r.our_status,
                r.channel_status,
                r.resolution,
                r.status,
                r.note,
                r.created_at,
            )
            for r in s.execute(stmt).scalars()
        ]


def resolve_difference(db: Database, diff_id: int, actor: str, note: str, now: datetime) -> bool:
    """Mark an open difference ``resolved`` with a note line (``[time] resolved by
    actor: note``); False when there is no such open difference. The note is required."""
    if not note.strip():
        raise ValueError("a note is required to resolve a difference")
    D = ReconDifference

    def work(s: Any) -> bool:
        row = s.execute(select(D).where(D.id == diff_id, D.status == "open")).scalar_one_or_none()
        if row is None:
            return False
        line = f"[{now:%Y-%m-%dT%H:%M:%SZ}] resolved by {actor[:64]}: {note.strip()[:500]}"
        text = (f"{row.note}\n{line}" if row.note else line)[-_NOTE_MAX:]
        done = s.execute(
            update(D)
            .where(D.id == diff_id, D.status == "open")
            .values(status="resolved", note=text)
            .execution_options(synchronize_session=False)
        )
        return bool(done.rowcount)

    return bool(db.run(work))


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


def parse_statement_csv(data: bytes | str) -> list[Any]:
    """A statement CSV upload as :class:`~paycore.channels.client.StatementLine` rows.

    Header: ``channel_txn_no,channel_ref,kind,amount,currency,status,settled_at``
    (``settled_at`` ISO 8601 with offset; ``channel_ref`` may be empty).
    Raises ValueError naming the first bad line.
    """
    import csv
    import io

    from paycore.channels.client import StatementLine

    text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
    reader = csv.DictReader(io.StringIO(text))
    need = {"channel_txn_no", "kind", "amount", "currency", "status", "settled_at"}
    missing = need - set(reader.fieldnames or ())
    if missing:
        raise ValueError(f"statement CSV lacks columns: {', '.join(sorted(missing))}")
    lines = []
    for n, rec in enumerate(reader, start=2):
        try:
            at = datetime.fromisoformat(rec["settled_at"].strip())
            if at.tzinfo is None:
                raise ValueError("settled_at needs a UTC offset")
            lines.append(
                StatementLine(
                    rec["channel_txn_no"].strip(),
                    (rec.get("channel_ref") or "").strip(),
                    rec["kind"].strip(),
                    int(rec["amount"]),
                    rec["currency"].strip(),
                    rec["status"].strip(),
                    at,
                )
            )
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(f"statement CSV line {n}: {exc}") from exc
    return lines


def difference_kinds(db: Database) -> list[str]:
    """The external difference classes plus every class on record (internal ones too)."""
    from paycore.recon.external import CLASSES

    with db.session() as s:
        seen = {str(k) for k in s.execute(select(ReconDifference.kind).distinct()).scalars()}
    return sorted(set(CLASSES) | seen)


def configured_pay_orgs(platform: Any) -> tuple[str, ...]:
    """The pay orgs the platform is configured for (``PAYWATCH_PAY_ORGS``)."""
    settings = getattr(platform, "settings", None)
    orgs = tuple(getattr(settings, "pay_orgs", None) or ())
    if orgs:
        return orgs
    from console import host

    return tuple(host.settings().pay_orgs)


def reconcile_statement(
    core: Any,
    lines: Iterable[Any],
    pay_org_no: str,
    day: date,
    *,
    pay_orgs: Collection[str],
    unfinished_ok: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Any:
    """Reconcile an uploaded statement for ``pay_org_no`` and UTC ``day``.

    The pay org must be one of ``pay_orgs`` (``*`` or an unknown org is refused, nothing
    recorded); a day not over yet is refused unless ``unfinished_ok`` (the person
    confirmed). ``progress`` is called with the number of lines read so far.
    Returns the :class:`~paycore.recon.ReconReport`.
    """
    from paycore.recon import reconcile_day

    def feed(_org: str, _day: date) -> Iterator[Any]:
        for n, line in enumerate(lines, start=1):
            yield line
            if progress is not None:
                progress(n)

    return reconcile_day(
        core, feed, pay_org_no, day, pay_orgs=tuple(pay_orgs), unfinished_ok=unfinished_ok
    )


def ids_as_text(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Table rows with every id (``id`` and ``*_id`` integer columns) as a string.

    Our ids are 64-bit; a browser table holds numbers as JavaScript doubles, exact only
    up to 2^53, so ``387985099441922048`` would show as ``...050``. As text it is exact.
    """

    def text(k: str, v: Any) -> Any:
        is_id = k == "id" or k.endswith("_id")
        return str(v) if is_id and isinstance(v, int) and not isinstance(v, bool) else v

    return [{k: text(k, v) for k, v in r.items()} for r in rows]


def big_ints_as_text(value: Any) -> Any:
    """``value`` (JSON-like) with integers beyond 2^53 as strings, for ``st.json``."""
    if isinstance(value, dict):
        return {k: big_ints_as_text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [big_ints_as_text(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)
    return value


_FLASH = "ops_flash:"


def flash(state: Any, page: str, message: str) -> None:
    """Keep ``message`` for ``page``'s next run (the rerun that refreshes its tables) in
    ``state`` (``st.session_state`` or any mutable mapping)."""
    state[_FLASH + page] = message


def take_flash(state: Any, page: str) -> str | None:
    """The message :func:`flash` kept for ``page``, once (``state``: ``st.session_state``
    or any mutable mapping)."""
    message = state.pop(_FLASH + page, None)
    return None if message is None else str(message)
