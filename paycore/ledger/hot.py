"""Summary posting of buffered hot-account changes.

Buffered postings write their legs at once but leave the balance row alone; this
job folds the queued deltas into each balance with one UPDATE per account per
batch. On PostgreSQL the batch is claimed with ``FOR UPDATE SKIP LOCKED`` so
several workers can run it side by side without applying a delta twice.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from ..db.engine import Database
from ..db.schema import PendingPosting
from ..ids import IdGenerator
from .journal import apply_delta


def summarize_pending(db: Database, ids: IdGenerator, *, batch: int = 5000) -> int:
    """Apply up to ``batch`` queued deltas; returns how many postings were folded in."""

    def work(session: Session) -> int:
        stmt = (
            select(PendingPosting.id, PendingPosting.account_id, PendingPosting.delta)
            .where(PendingPosting.summary_id.is_(None))
            .order_by(PendingPosting.id)
            .limit(batch)
        )
        if db.is_postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        rows = session.execute(stmt).all()
        if not rows:
            return 0
        summary_id = ids.next_id()
        totals: dict[int, int] = {}
        for row in rows:
            totals[row.account_id] = totals.get(row.account_id, 0) + row.delta
        for account_id in sorted(totals):
            apply_delta(session, account_id, totals[account_id])
        session.execute(
            update(PendingPosting)
            .where(PendingPosting.id.in_([r.id for r in rows]))
            .values(summary_id=summary_id)
        )
        return len(rows)

    return db.run(work)


def drain_pending(db: Database, ids: IdGenerator, *, batch: int = 5000) -> int:
    """Run :func:`summarize_pending` until the queue is empty; returns the total folded."""
    total = 0
    while n := summarize_pending(db, ids, batch=batch):
        total += n
    return total


def pending_count(db: Database) -> int:
    """How many buffered postings wait for summary posting (a backlog gauge)."""
    with db.session() as s:
        return int(
            s.execute(
                select(func.count())
                .select_from(PendingPosting)
                .where(PendingPosting.summary_id.is_(None))
            ).scalar_one()
        )
