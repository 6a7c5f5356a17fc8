"""Reconciliation reads and writes for the ops pages: runs, differences, a difference settled
by a human (:func:`resolve_difference`), and an uploaded statement parsed and reconciled
(:func:`reconcile_statement`, pay org and day checked first).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import select, update

from paycore import Database
from paycore.db.schema import ReconDifference, ReconRun

_NOTE_MAX = 4000


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
