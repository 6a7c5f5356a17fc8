"""Internal near-real-time reconciliation: trade ↔ pay ↔ ledger (↔ channel, sampled).

Run every minute over a sliding window (default 15 min): every trade updated in the
window, every trade with a pay order created or finished in it, and the origins of
refunds created in it are read in one snapshot (REPEATABLE READ on PostgreSQL; a
SQLite transaction is a snapshot already). Each state change of the pay core is one
transaction, so a consistent snapshot shows no half-done work: whatever disagrees is
a real difference. Checks:

* ``internal.trade_pay_mismatch``: a paid trade has exactly one successful pay order,
  for the trade's amount; an unpaid trade has none; a refund trade's status follows
  its refund order;
* ``internal.pay_item_mismatch``: a successful pay order's items all succeeded and
  add up to its amount;
* ``internal.refund_sum_mismatch``: a trade's ``refunded_amount`` is the sum of its
  refunds still pending or done;
* ``internal.missing_ledger_entry``: each successful item has its ledger entry
  (``pay_item``, ``withdraw_out`` or ``refund_item`` keyed by the item id) and each
  successful pay, recharge or transfer order its ``pay_complete``;
* ``internal.channel_status_mismatch`` (only with a gateway, for a sample of recent
  successful channel items): the channel's final answer agrees with ours. In the worker
  these queries are ``job.reconciliation``'s (guarded): a pay org the guard refuses
  (degraded, breaker open) is not asked again in that run, and nothing is recorded for it.

Differences are recorded once per (kind, pay org, day of the trade, ref) with
resolution ``manual``; the next minute's overlapping window finds them again and
adds nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from .. import status as st
from ..channels.errors import ChannelRefused
from ..channels.port import ChannelResult
from ..db.schema import JournalEntry, PayItem, PayOrder, Trade
from ..errors import PayCoreError
from .runs import Difference, ReconReport, record_differences, save_progress, start_run

if TYPE_CHECKING:
    from ..core import PayCore

log = logging.getLogger(__name__)
PAID_STATES = (st.PAID, st.CONFIRMED)
ITEM_ENTRY = {
    "pay": "pay_item",
    "recharge": "pay_item",
    "transfer": "pay_item",
    "withdraw": "withdraw_out",
    "refund": "refund_item",
}
COMPLETE_ENTRY = ("pay", "recharge", "transfer")


class QueryGateway(Protocol):
    def query(self, org: str, channel_txn_no: str) -> ChannelResult | None: ...


def _chunked(values: Iterable[int], size: int = 1000) -> Iterator[list[int]]:
    batch: list[int] = []
    for v in values:
        batch.append(v)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Snapshot:
    """Everything the checks need, read in one transaction."""

    def __init__(self, s: Session, since: datetime, until: datetime) -> None:
        ids = set(
            s.execute(
                select(Trade.id).where(Trade.updated_at >= since, Trade.updated_at <= until)
            ).scalars()
        )
        ids.update(
            s.execute(
                select(PayOrder.trade_id).where(
                    or_(
                        PayOrder.created_at.between(since, until),
                        PayOrder.finished_at.between(since, until),
                    )
                )
            ).scalars()
        )
        self.trades: dict[int, Any] = {}
        self._load_trades(s, ids)
        origins = {t.origin_trade_id for t in self.trades.values() if t.origin_trade_id}
        self._load_trades(s, origins - set(self.trades))
        tids = list(self.trades)
        self.orders: dict[int, list[Any]] = defaultdict(list)
        self.items: dict[int, list[Any]] = defaultdict(list)
        self.refunds: dict[int, int] = {}
        for part in _chunked(tids):
            for po in s.execute(select(PayOrder).where(PayOrder.trade_id.in_(part))).scalars():
                self.orders[po.trade_id].append(po)
            sums = s.execute(
                select(Trade.origin_trade_id, func.sum(Trade.amount))
                .where(
                    Trade.origin_trade_id.in_(part),
                    Trade.trade_type == "refund",
                    Trade.status.in_((st.PAYING, st.PAID)),
                )
                .group_by(Trade.origin_trade_id)
            ).all()
            self.refunds.update({int(o): int(v) for o, v in sums if o is not None})
        po_ids = [po.id for pos in self.orders.values() for po in pos]
        for part in _chunked(po_ids):
            for it in s.execute(select(PayItem).where(PayItem.pay_order_id.in_(part))).scalars():
                self.items[it.pay_order_id].append(it)
        self.entries: set[tuple[str, str]] = set()
        for part in _chunked(tids):
            self.entries.update(
                (r.biz_type, r.biz_key)
                for r in s.execute(
                    select(JournalEntry.biz_type, JournalEntry.biz_key).where(
                        JournalEntry.trade_id.in_(part)
                    )
                )
            )

    def _load_trades(self, s: Session, ids: Iterable[int]) -> None:
        for part in _chunked(ids):
            for t in s.execute(select(Trade).where(Trade.id.in_(part))).scalars():
                self.trades[t.id] = t


def _diff(t: Any, kind: str, ref: int | str, note: str, **kw: Any) -> Difference:
    return Difference(
        kind, t.pay_org_no, t.created_at.date().isoformat(), str(ref), "manual", note=note, **kw
    )


def _check_trade(snap: _Snapshot, t: Any) -> Iterator[Difference]:
    orders = snap.orders.get(t.id, [])
    ok = [po for po in orders if po.status == st.SUCCESS]
    kw = {"our_status": t.status, "channel_status": ",".join(sorted(po.status for po in orders))}
    if t.trade_type == "refund":
        want = {st.PAID: st.SUCCESS, st.CLOSED: st.FAILED, st.PAYING: st.PROCESSING}
        if [po.status for po in orders] != [want.get(t.status, "?")]:
            yield _diff(t, "internal.trade_pay_mismatch", t.id, "refund trade vs its order", **kw)
    elif t.status in PAID_STATES:
        if len(ok) != 1 or ok[0].amount != t.paid_amount or t.paid_amount != t.amount:
            note = f"paid trade with {len(ok)} successful pay orders"
            yield _diff(
                t,
                "internal.trade_pay_mismatch",
                t.id,
                note,
                our_amount=t.paid_amount,
                channel_amount=sum(po.amount for po in ok),
                **kw,
            )
    elif ok:
        note = f"{t.status} trade with a successful pay order"
        yield _diff(t, "internal.trade_pay_mismatch", t.id, note, **kw)
    if t.trade_type in ("instant", "guaranteed"):
        expected = snap.refunds.get(t.id, 0)
        if t.refunded_amount != expected:
            yield _diff(
                t,
                "internal.refund_sum_mismatch",
                t.id,
                "refunded_amount vs refunds",
                our_amount=t.refunded_amount,
                channel_amount=expected,
            )
    for po in ok:
        items = snap.items.get(po.id, [])
        if any(i.status != st.SUCCESS for i in items) or sum(i.amount for i in items) != po.amount:
            note = "order success, items " + ",".join(sorted(i.status for i in items))
            yield _diff(
                t,
                "internal.pay_item_mismatch",
                po.id,
                note,
                our_amount=po.amount,
                channel_amount=sum(i.amount for i in items),
            )
        keys = [(ITEM_ENTRY[po.pay_type], str(i.id)) for i in items if i.status == st.SUCCESS]
        if po.pay_type in COMPLETE_ENTRY:
            keys.append(("pay_complete", str(po.id)))
        for key in keys:
            if key not in snap.entries:
                yield _diff(
                    t,
                    "internal.missing_ledger_entry",
                    ":".join(key),
                    f"no {key[0]} entry for pay order {po.id}",
                )


def reconcile_internal(
    core: PayCore,
    *,
    window_s: float = 900,
    now: datetime | None = None,
    gateway: QueryGateway | None = None,
    channel_sample: int = 20,
) -> ReconReport:
    """Reconcile the window ending at ``now``; the run is keyed by the window's start."""
    until = now or core.clock()
    since = until - timedelta(seconds=window_s)
    report = start_run(core, "internal", "*", since.isoformat(timespec="seconds"))
    with core.db.session() as s:
        if core.db.is_postgres:
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        snap = _Snapshot(s, since, until)
    diffs: list[Difference] = []
    for t in snap.trades.values():
        found = list(_check_trade(snap, t))
        diffs.extend(found)
        report.checked += 1
        report.matched += not found
    if gateway is not None and channel_sample > 0:
        diffs.extend(_check_channel(snap, gateway, channel_sample))
    unique = {(d.kind, d.pay_org_no, d.day, d.ref): d for d in diffs}
    for d in unique.values():
        report.count(d.kind)

    def work(s: Session) -> int:
        added = record_differences(s, core, report.run_id, list(unique.values()))
        save_progress(s, report, report.checked, status="done", finished_at=core.clock())
        return added

    report.added = core.db.run(work)
    if report.counts:
        log.warning(
            "internal recon %s: differences %s (%d new)", since, report.counts, report.added
        )
    return report


def _check_channel(snap: _Snapshot, gateway: QueryGateway, sample: int) -> Iterator[Difference]:
    """Ask the channel about the newest successful channel items of the window."""
    picked = sorted(
        (
            (i, snap.trades[po.trade_id])
            for pos in snap.orders.values()
            for po in pos
            for i in snap.items.get(po.id, [])
            if i.tool == "channel" and i.status == st.SUCCESS and i.channel_txn_no
        ),
        key=lambda pair: pair[0].finished_at,
        reverse=True,
    )[:sample]
    refused: set[str] = set()  # orgs the guard refused: not asked again this run
    for item, t in picked:
        if item.pay_org_no in refused:
            continue
        try:
            r = gateway.query(str(item.pay_org_no), str(item.channel_txn_no))
        except ChannelRefused as exc:  # never asked (degraded, breaker open): next run
            refused.add(str(item.pay_org_no))
            log.info("internal recon: channel %s skipped: %s", item.pay_org_no, exc.message)
            continue
        except PayCoreError as exc:  # no answer is no evidence either way
            log.info("internal recon: channel query of %s failed: %s", item.id, exc.code)
            continue
        amount = item.settled_amount if item.settled_amount is not None else item.amount
        if r is None or r.status != st.SUCCESS or r.amount != amount:
            yield _diff(
                t,
                "internal.channel_status_mismatch",
                str(item.channel_txn_no),
                "the channel's answer differs from ours",
                our_amount=amount,
                channel_amount=None if r is None else r.amount,
                our_status=st.SUCCESS,
                channel_status="pending" if r is None else r.status,
            )
