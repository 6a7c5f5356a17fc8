"""Reconciliation runs and differences: the bookkeeping both reconciliations share.

A run is one row of ``recon_runs``, unique per (kind, pay org, day): starting a run
that exists resumes it (from its ``cursor`` and partial ``stats`` when it stopped
half-way, from the start when it had finished). Differences are rows of
``recon_differences``, unique per (kind, pay org, day, ref) and inserted with
``ON CONFLICT DO NOTHING``: finding a difference again adds nothing, and a
difference someone already resolved stays resolved.

Resolution paths: ``compensation`` (a job can put it right: query the channel and
settle, or reverse), ``manual`` (a person must look), ``expected`` (a timing gap
across the cut-off: the other side shows it on the adjacent day).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ..db.schema import ReconDifference, ReconRun
from ..db.util import business_key, insert_ignore

if TYPE_CHECKING:
    from ..core import PayCore

RESOLUTIONS = ("compensation", "manual", "expected")


@dataclass(frozen=True, slots=True)
class Difference:
    """One difference before it is recorded."""

    kind: str
    pay_org_no: str
    day: str
    ref: str
    resolution: str
    our_amount: int | None = None
    channel_amount: int | None = None
    our_status: str = ""
    channel_status: str = ""
    note: str = ""


@dataclass
class ReconReport:
    """What one run found. ``counts`` are per class, whether new or already on record;
    ``added`` is how many differences this run recorded for the first time."""

    kind: str
    pay_org_no: str
    day: str
    run_id: int
    checked: int = 0
    matched: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    added: int = 0
    resumed_from: int = 0
    status: str = "done"

    def count(self, kind: str, n: int = 1) -> None:
        self.counts[kind] = self.counts.get(kind, 0) + n

    @property
    def differences(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def start_run(core: PayCore, kind: str, pay_org_no: str, day: str) -> ReconReport:
    """Create or resume the run (kind, org, day); the report carries its cursor and stats."""

    def work(s: Session) -> ReconReport:
        insert_ignore(
            s,
            ReconRun.__table__,
            {
                "id": core.ids.next_id(),
                "kind": kind,
                "pay_org_no": pay_org_no,
                "day": day,
                "status": "running",
                "cursor": 0,
                "stats": "{}",
                "started_at": core.clock(),
            },
        )
        stmt = select(ReconRun).where(
            ReconRun.kind == kind, ReconRun.pay_org_no == pay_org_no, ReconRun.day == day
        )
        if core.db.is_postgres:
            stmt = stmt.with_for_update()
        run = s.execute(stmt).scalar_one()
        report = ReconReport(kind, pay_org_no, day, run.id)
        if run.status == "done":  # a re-run checks everything again; it records nothing twice
            run.cursor, run.stats, run.status = 0, "{}", "running"
            run.started_at = core.clock()
            return report
        run.status = "running"
        saved = json.loads(run.stats or "{}")
        report.resumed_from = run.cursor
        report.checked = int(saved.get("checked", 0))
        report.matched = int(saved.get("matched", 0))
        report.counts = {str(k): int(v) for k, v in saved.get("counts", {}).items()}
        return report

    return core.db.run(work)


def save_progress(
    s: Session,
    report: ReconReport,
    cursor: int,
    *,
    status: str = "running",
    finished_at: datetime | None = None,
) -> None:
    """Store the run's cursor and partial stats (in the caller's transaction)."""
    stats = {"checked": report.checked, "matched": report.matched, "counts": report.counts}
    values: dict[str, Any] = {"cursor": cursor, "stats": json.dumps(stats), "status": status}
    if finished_at is not None:
        values["finished_at"] = finished_at
    s.execute(
        update(ReconRun)
        .where(ReconRun.id == report.run_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def mark_failed(core: PayCore, report: ReconReport) -> None:
    """Flag a run that stopped on an error; its cursor stays where the last commit left it."""
    core.db.run(
        lambda s: s.execute(
            update(ReconRun).where(ReconRun.id == report.run_id).values(status="failed")
        )
    )


def record_differences(s: Session, core: PayCore, run_id: int, diffs: list[Difference]) -> int:
    """Insert the differences not yet on record; returns how many were new."""
    if not diffs:
        return 0
    for d in diffs:
        if d.resolution not in RESOLUTIONS:
            raise ValueError(f"unknown resolution {d.resolution!r}")
    now = core.clock()
    rows = [
        {
            "id": core.ids.next_id(),
            "run_id": run_id,
            "kind": d.kind,
            "pay_org_no": d.pay_org_no,
            "day": d.day,
            "ref": d.ref[:64],
            "our_amount": d.our_amount,
            "channel_amount": d.channel_amount,
            "our_status": d.our_status[:16],
            "channel_status": d.channel_status[:16],
            "resolution": d.resolution,
            "status": "open",
            "note": d.note[:2000],
            "created_at": now,
        }
        for d in diffs
    ]
    added = 0
    for start in range(0, len(rows), 1000):
        part = rows[start : start + 1000]
        ins: Any = postgresql.insert if core.db.is_postgres else sqlite.insert
        stmt = (
            ins(ReconDifference)
            .values(part)
            .on_conflict_do_nothing(index_elements=business_key(ReconDifference.__table__))
        )
        stmt = stmt.returning(ReconDifference.id)
        added += len(s.execute(stmt).all())
    return added
