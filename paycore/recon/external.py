"""External (T+1) reconciliation: our books for one day against the channel's statement.

The channel's statement for UTC ``day`` lists the transactions it settled that day.
Lines are matched to our channel pay items (pays, refunds, withdrawals) by
``channel_txn_no``; our side of the day is every channel item of the pay org that
reached *success* with ``finished_at`` inside the day. Each difference is one class:

=================  ===========================================================  ============
class              meaning                                                      resolution
=================  ===========================================================  ============
missing_ours       on the statement, but we have no such transaction (or we     manual
                   booked it on another day, beyond the cut-off grace): money
                   moved at the channel that our books do not explain
missing_channel    our success that the channel's statement does not have       compensation
amount_mismatch    both sides settled it, for different amounts                 manual
status_mismatch    the channel settled it, we did not (still processing, or     compensation
                   failed): querying the channel and settling puts it right
timing_gap         the two sides booked it on either side of midnight, within   expected
                   ``cutoff_grace_s`` of it: expected, not yet on the other day
=================  ===========================================================  ============

Money that compensation handled is explained by our books, not a difference: a pay
item we failed although the channel took the money (an amount mismatch, a success
after the item failed) matches its line when a pay exception of the item holds that
amount, and the channel's refund ``x{pay_item_id}`` of such money (see
:func:`paycore.jobs.refund_txn_no`) matches its ``exception_refund`` posting.

Memory stays modest for large statements: lines are consumed as an iterable in
chunks; each chunk looks up only its own transactions (by the unique index on
``(pay_org_no, channel_txn_no)``), and only the set of channel txn numbers seen is
kept for the final pass over our side, which is streamed.

A run is resumable: after every chunk its cursor (lines done) and partial counts are
committed with the chunk's differences, and a run that stopped resumes after the
cursor (the statement of a past day is the same file on every download). It is
idempotent: differences are unique per (class, org, day, txn), so re-running a day
records nothing new.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import ColumnElement, String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from .. import status as st
from ..channels.client import StatementLine
from ..context import check_code
from ..db.schema import JournalEntry, JournalLeg, PayException, PayItem
from ..errors import DayNotOver, UnknownPayOrg
from .runs import (
    Difference,
    ReconReport,
    mark_failed,
    record_differences,
    save_progress,
    start_run,
)

if TYPE_CHECKING:
    from ..core import PayCore

log = logging.getLogger(__name__)
CLASSES = ("missing_ours", "missing_channel", "amount_mismatch", "status_mismatch", "timing_gap")
RESOLUTION = {
    "missing_ours": "manual",
    "missing_channel": "compensation",
    "amount_mismatch": "manual",
    "status_mismatch": "compensation",
    "timing_gap": "expected",
}


class StatementSource(Protocol):
    """Anything with a ``statement(org, day)``, e.g. :class:`~paycore.channels.ChannelGateway`."""

    def statement(self, org: str, day: date) -> Iterable[StatementLine]: ...


Source = StatementSource | Callable[[str, date], Iterable[StatementLine]]


class _Day:
    """The day's bounds and the cut-off test."""

    def __init__(self, day: date, grace_s: float) -> None:
        self.start = datetime.combine(day, time(0), tzinfo=UTC)
        self.end = self.start + timedelta(days=1)
        self.grace = timedelta(seconds=grace_s)
        self.text = day.isoformat()

    def inside(self, at: datetime) -> bool:
        return self.start <= at < self.end

    def near_cutoff(self, at: datetime) -> bool:
        """Within the grace of either midnight that bounds the day."""
        return any(abs(at - edge) <= self.grace for edge in (self.start, self.end))


def _chunks(lines: Iterable[StatementLine], size: int) -> Iterator[list[StatementLine]]:
    chunk: list[StatementLine] = []
    for line in lines:
        chunk.append(line)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def reconcile_day(
    core: PayCore,
    source: Source,
    pay_org_no: str,
    day: date,
    *,
    cutoff_grace_s: float = 300,
    chunk: int = 5000,
    pay_orgs: Collection[str] | None = None,
    unfinished_ok: bool = True,
) -> ReconReport:
    """Reconcile ``pay_org_no`` for UTC ``day``; returns the counts per class.

    ``source`` is a gateway (its ``statement(org, day)``) or a callable of
    ``(org, day)`` returning statement lines (a list or a lazy iterable).

    Refused before anything is recorded: a pay org that is not a context code (``*``)
    (:class:`~paycore.errors.InvalidContext`), one outside ``pay_orgs`` when given
    (:class:`~paycore.errors.UnknownPayOrg`), and, with ``unfinished_ok=False``, a day
    that is not over yet in UTC (:class:`~paycore.errors.DayNotOver`).
    """
    check_pay_org(pay_org_no, pay_orgs)
    if not unfinished_ok:
        check_day_over(day, core.clock())
    fetch: Callable[[str, date], Iterable[StatementLine]] = (
        source.statement if hasattr(source, "statement") else source
    )
    d = _Day(day, cutoff_grace_s)
    report = start_run(core, "external", pay_org_no, d.text)
    try:
        _run(core, fetch(pay_org_no, day), pay_org_no, d, report, chunk)
    except BaseException:
        mark_failed(core, report)
        raise
    return report


def check_pay_org(pay_org_no: str, pay_orgs: Collection[str] | None = None) -> str:
    """``pay_org_no`` if it is a context code and (when ``pay_orgs`` is given) one of them."""
    check_code(pay_org_no, "pay_org_no")
    if pay_orgs is not None and pay_org_no not in pay_orgs:
        known = ", ".join(sorted(pay_orgs)) or "none"
        raise UnknownPayOrg(
            f"{pay_org_no} is not a configured pay org (configured: {known})", field="pay_org_no"
        )
    return pay_org_no


def day_over(day: date, now: datetime) -> bool:
    """Whether the UTC ``day`` has ended at ``now``."""
    return now >= datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)


def check_day_over(day: date, now: datetime) -> None:
    """Raise :class:`~paycore.errors.DayNotOver` when the UTC ``day`` has not ended."""
    if not day_over(day, now):
        raise DayNotOver(
            f"the UTC day {day.isoformat()} is not over yet: its statement may "
            "still grow, and what it lacks now would be recorded as differences"
        )


def _run(
    core: PayCore,
    lines: Iterable[StatementLine],
    org: str,
    d: _Day,
    report: ReconReport,
    size: int,
) -> None:
    seen: set[str] = set()
    done = 0
    for part in _chunks(lines, size):
        todo = []
        for line in part:
            seen.add(line.channel_txn_no)
            if done >= report.resumed_from:  # earlier lines: recorded by the run that stopped
                todo.append(line)
            done += 1
        if todo:
            diffs, matched = _match_chunk(core, org, d, todo)
            _commit(core, report, diffs, len(todo), matched, done)
    _commit(core, report, _ours_missing(core, org, d, seen), 0, 0, done, final=True)
    log.info(
        "external recon %s %s: %d lines, %d matched, differences %s (%d new)",
        org,
        d.text,
        report.checked,
        report.matched,
        report.counts,
        report.added,
    )


def _commit(
    core: PayCore,
    report: ReconReport,
    diffs: list[Difference],
    checked: int,
    matched: int,
    cursor: int,
    *,
    final: bool = False,
) -> None:
    """Record a chunk's differences and move the cursor, in one transaction."""

    def work(s: Session) -> ReconReport:
        new = replace(report, counts=dict(report.counts))  # a retried transaction starts over
        new.checked += checked
        new.matched += matched
        for diff in diffs:
            new.count(diff.kind)
        new.added += record_differences(s, core, new.run_id, diffs)
        finished = core.clock() if final else None
        save_progress(s, new, cursor, status="done" if final else "running", finished_at=finished)
        return new

    new = core.db.run(work)
    report.checked, report.matched, report.counts, report.added = (
        new.checked,
        new.matched,
        new.counts,
        new.added,
    )


def _txn_in(core: PayCore, txns: set[str]) -> ColumnElement[bool]:
    """``channel_txn_no IN (...)``; one array parameter on PostgreSQL, not thousands."""
    if core.db.is_postgres:
        return PayItem.channel_txn_no == any_(bindparam("txns", list(txns), ARRAY(String(64))))
    return PayItem.channel_txn_no.in_(txns)


def _diff(org: str, d: _Day, kind: str, ref: str, **kw: Any) -> Difference:
    return Difference(kind, org, d.text, ref, RESOLUTION[kind], **kw)


def _match_chunk(
    core: PayCore, org: str, d: _Day, lines: list[StatementLine]
) -> tuple[list[Difference], int]:
    """Classify one chunk of statement lines; returns its differences and matches."""
    wanted = _txn_in(core, {ln.channel_txn_no for ln in lines})
    with core.db.session() as s:
        rows = (
            s.connection()
            .execute(
                select(
                    PayItem.channel_txn_no,
                    PayItem.id,
                    PayItem.status,
                    PayItem.amount,
                    PayItem.settled_amount,
                    PayItem.finished_at,
                ).where(PayItem.pay_org_no == org, wanted)
            )
            .all()
        )
    ours = {r[0]: r for r in rows}
    taken, refunded = _compensated(core, [r[1] for r in rows if r[2] == st.FAILED], lines)
    diffs: list[Difference] = []
    matched = 0
    for ln in lines:
        ref = ln.channel_txn_no
        o = ours.get(ref)
        if o is None and ln.status == st.SUCCESS and refunded.get(ref) == ln.amount:
            matched += 1  # our compensation refund of money we could not keep
            continue
        if o is None:
            diffs.append(
                _diff(
                    org,
                    d,
                    "missing_ours",
                    ref,
                    note="unknown to us",
                    channel_amount=ln.amount,
                    channel_status=ln.status,
                )
            )
            continue
        _, item_id, status, amount, settled, finished = o
        amount = settled if settled is not None else amount
        if status == st.FAILED and ln.status == st.SUCCESS and taken.get(item_id) == ln.amount:
            status, amount = st.SUCCESS, ln.amount  # booked as taken; compensation refunds it
        if status == ln.status and amount == ln.amount and finished and d.inside(finished):
            matched += 1
            continue
        if status != ln.status:
            kind, note = "status_mismatch", ""
        elif amount != ln.amount:
            kind, note = "amount_mismatch", ""
        elif finished is not None and d.near_cutoff(finished):
            kind, note = "timing_gap", f"we booked it at {finished.isoformat()}"
        else:
            when = finished.isoformat() if finished else "no time"
            kind, note = "missing_ours", f"we booked it: {when}"
        diffs.append(
            _diff(
                org,
                d,
                kind,
                ref,
                note=note,
                our_amount=amount,
                our_status=status,
                channel_amount=ln.amount,
                channel_status=ln.status,
            )
        )
    return diffs, matched


def _compensated(
    core: PayCore, failed_items: list[int], lines: list[StatementLine]
) -> tuple[dict[int, int], dict[str, int]]:
    """What compensation explains in a chunk: money taken by failed items (pay item id ->
    amount held by its pay exception) and our refunds of it (``x{id}`` -> amount posted)."""
    refs = {
        ln.channel_txn_no[1:]: ln.channel_txn_no
        for ln in lines
        if ln.channel_txn_no[:1] == "x" and ln.channel_txn_no[1:].isdigit()
    }
    taken: dict[int, int] = {}
    refunded: dict[str, int] = {}
    with core.db.session() as s:
        if failed_items:
            taken = {
                int(i): int(a)
                for i, a in s.execute(
                    select(PayException.pay_item_id, func.max(PayException.amount_taken))
                    .where(PayException.pay_item_id.in_(failed_items))
                    .group_by(PayException.pay_item_id)
                )
                if i is not None
            }
        if refs:
            refunded = {
                refs[k]: int(a)
                for k, a in s.execute(
                    select(JournalEntry.biz_key, func.sum(JournalLeg.amount))
                    .join(JournalLeg, JournalLeg.entry_id == JournalEntry.id)
                    .where(
                        JournalEntry.biz_type == "exception_refund",
                        JournalEntry.biz_key.in_(list(refs)),
                        JournalLeg.amount > 0,
                    )
                    .group_by(JournalEntry.biz_key)
                )
            }
    return taken, refunded


def _ours_missing(core: PayCore, org: str, d: _Day, seen: set[str]) -> list[Difference]:
    """Our successes of the day that the statement does not list (streamed)."""
    stmt = (
        select(PayItem.channel_txn_no, PayItem.amount, PayItem.settled_amount, PayItem.finished_at)
        .where(
            PayItem.pay_org_no == org,
            PayItem.tool == "channel",
            PayItem.status == st.SUCCESS,
            PayItem.finished_at >= d.start,
            PayItem.finished_at < d.end,
        )
        .execution_options(stream_results=True, max_row_buffer=5000)
    )
    diffs: list[Difference] = []
    with core.db.session() as s:
        for r in s.connection().execute(stmt):
            if r.channel_txn_no is None or r.channel_txn_no in seen:
                continue
            amount = r.settled_amount if r.settled_amount is not None else r.amount
            kind = "timing_gap" if d.near_cutoff(r.finished_at) else "missing_channel"
            note = f"we booked it at {r.finished_at.isoformat()}; not on the statement"
            diffs.append(
                _diff(
                    org,
                    d,
                    kind,
                    r.channel_txn_no,
                    our_amount=amount,
                    our_status=st.SUCCESS,
                    note=note,
                )
            )
    return diffs
