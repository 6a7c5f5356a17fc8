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
:func:`paycore.jobs.refund_txn_no`) matches its ``exception_refund`` posting. A line for
the old transaction of a pay item rerouted away from the org (``pay_item_reroutes``)
matches that reroute: failed there, or a late success booked as an exception holding the
line's amount (refunded in full at that org as ``x{reroute id}``, matched as above).

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
from typing import TYPE_CHECKING, Protocol

from sqlalchemy.orm import Session

from ..channels.client import StatementLine
from ..context import check_code
from ..errors import DayNotOver, UnknownPayOrg
from .matching import CLASSES, RESOLUTION, Day, match_chunk, ours_missing
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

__all__ = [
    "CLASSES",
    "RESOLUTION",
    "Source",
    "StatementSource",
    "check_day_over",
    "check_pay_org",
    "day_over",
    "reconcile_day",
]
log = logging.getLogger(__name__)


class StatementSource(Protocol):
    """Anything with a ``statement(org, day)``, e.g. :class:`~paycore.channels.ChannelGateway`."""

    def statement(self, org: str, day: date) -> Iterable[StatementLine]: ...


Source = StatementSource | Callable[[str, date], Iterable[StatementLine]]


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
    d = Day(day, cutoff_grace_s)
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
    d: Day,
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
            diffs, matched = match_chunk(core, org, d, todo)
            _commit(core, report, diffs, len(todo), matched, done)
    _commit(core, report, ours_missing(core, org, d, seen), 0, 0, done, final=True)
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
