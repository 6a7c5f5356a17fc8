"""External reconciliation's matching: statement lines against our channel pay items,
each difference one class of :data:`CLASSES` with its :data:`RESOLUTION` (the classes
are described in :mod:`paycore.recon.external`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, String, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from .. import status as st
from ..channels.client import StatementLine
from ..db.schema import JournalEntry, JournalLeg, PayException, PayItem, PayItemReroute
from ..pay_reroute_late import rerouted_key
from .runs import Difference

if TYPE_CHECKING:
    from ..core import PayCore

CLASSES = ("missing_ours", "missing_channel", "amount_mismatch", "status_mismatch", "timing_gap")
RESOLUTION = {
    "missing_ours": "manual",
    "missing_channel": "compensation",
    "amount_mismatch": "manual",
    "status_mismatch": "compensation",
    "timing_gap": "expected",
}


class Day:
    """The day's bounds and the cut-off test."""

    def __init__(self, day: date, grace_s: float) -> None:
        self.start = datetime.combine(day, time(0), tzinfo=UTC)
        self.end = self.start + timedelta(days=1)
        self.grace = timedelta(seconds=grace_s)
        self.text = day.isoformat()

    def inside(self, at: datetime) -> bool:
        """Whether ``at`` falls within the day."""
        return self.start <= at < self.end

    def near_cutoff(self, at: datetime) -> bool:
        """Within the grace of either midnight that bounds the day."""
        return any(abs(at - edge) <= self.grace for edge in (self.start, self.end))


def _txn_in(core: PayCore, txns: set[str]) -> ColumnElement[bool]:
    """``channel_txn_no IN (...)``; one array parameter on PostgreSQL, not thousands."""
    if core.db.is_postgres:
        return PayItem.channel_txn_no == any_(bindparam("txns", list(txns), ARRAY(String(64))))
    return PayItem.channel_txn_no.in_(txns)


def _diff(org: str, d: Day, kind: str, ref: str, **kw: Any) -> Difference:
    return Difference(kind, org, d.text, ref, RESOLUTION[kind], **kw)


def _our_items(core: PayCore, org: str, lines: list[StatementLine]) -> list[Any]:
    """Our pay items of ``org`` that the lines name: (txn no, id, status, amount,
    settled amount, finished at)."""
    wanted = _txn_in(core, {ln.channel_txn_no for ln in lines})
    with core.db.session() as s:
        return list(
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


def match_chunk(
    core: PayCore, org: str, d: Day, lines: list[StatementLine]
) -> tuple[list[Difference], int]:
    """Classify one chunk of statement lines; returns its differences and matches."""
    rows = _our_items(core, org, lines)
    ours = {r[0]: r for r in rows}
    taken, refunded = _compensated(core, [r[1] for r in rows if r[2] == st.FAILED], lines)
    moved = _rerouted(core, org, {ln.channel_txn_no for ln in lines} - set(ours))
    diffs: list[Difference] = []
    matched = 0
    for ln in lines:
        if ln.channel_txn_no in moved:
            diff = _classify_moved(org, d, ln, moved[ln.channel_txn_no])
        else:
            diff = _classify(org, d, ln, ours.get(ln.channel_txn_no), taken, refunded)
        if diff is None:
            matched += 1
        else:
            diffs.append(diff)
    return diffs, matched


def _classify(
    org: str,
    d: Day,
    ln: StatementLine,
    o: Any,
    taken: dict[int, int],
    refunded: dict[str, int],
) -> Difference | None:
    """The line's difference from our item ``o``; None when they match."""
    ref = ln.channel_txn_no
    if o is None and ln.status == st.SUCCESS and refunded.get(ref) == ln.amount:
        return None  # our compensation refund of money we could not keep
    if o is None:
        return _diff(
            org,
            d,
            "missing_ours",
            ref,
            note="unknown to us",
            channel_amount=ln.amount,
            channel_status=ln.status,
        )
    _, item_id, status, amount, settled, finished = tuple(o)
    amount = settled if settled is not None else amount
    if status == st.FAILED and ln.status == st.SUCCESS and taken.get(item_id) == ln.amount:
        status, amount = st.SUCCESS, ln.amount  # booked as taken; compensation refunds it
    if status == ln.status and amount == ln.amount and finished and d.inside(finished):
        return None
    if status != ln.status:
        kind, note = "status_mismatch", ""
    elif amount != ln.amount:
        kind, note = "amount_mismatch", ""
    elif finished is not None and d.near_cutoff(finished):
        kind, note = "timing_gap", f"we booked it at {finished.isoformat()}"
    else:
        when = finished.isoformat() if finished else "no time"
        kind, note = "missing_ours", f"we booked it: {when}"
    return _diff(
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


def _rerouted(core: PayCore, org: str, txns: set[str]) -> dict[str, tuple[str, int | None]]:
    """The lines' transactions that a rerouted pay item left at ``org``: from txn ->
    (the org it moved to, the amount its late-success exception holds, None when no
    late success was booked)."""
    if not txns:
        return {}
    r = PayItemReroute
    with core.db.session() as s:
        found = s.execute(
            select(r.id, r.from_txn, r.to_org).where(r.from_org == org, r.from_txn.in_(txns))
        ).all()
        keys = {rerouted_key(i): txn for i, txn, _ in found}
        held = (
            {
                keys[k]: int(a)
                for k, a in s.execute(
                    select(PayException.biz_key, PayException.amount_taken).where(
                        PayException.kind == "other", PayException.biz_key.in_(list(keys))
                    )
                )
            }
            if keys
            else {}
        )
    return {txn: (to_org, held.get(txn)) for _, txn, to_org in found}


def _classify_moved(
    org: str, d: Day, ln: StatementLine, moved: tuple[str, int | None]
) -> Difference | None:
    """A line for the old transaction of a pay item rerouted away from ``org``: matched
    when the org failed it (nothing moved) or when its late success is booked as an
    exception holding that amount (refunded in full at ``org``); else a difference."""
    to_org, held = moved
    if ln.status != st.SUCCESS or held == ln.amount:
        return None
    if held is None:
        kind, note = "missing_ours", f"rerouted to {to_org}; the late success is not booked"
    else:
        kind, note = "amount_mismatch", f"rerouted to {to_org}; its late success booked {held}"
    return _diff(
        org,
        d,
        kind,
        ln.channel_txn_no,
        note=note,
        our_amount=held,
        our_status="" if held is None else st.SUCCESS,
        channel_amount=ln.amount,
        channel_status=ln.status,
    )


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


def ours_missing(core: PayCore, org: str, d: Day, seen: set[str]) -> list[Difference]:
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
