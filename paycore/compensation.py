"""Compensation refunds: the channel refund that returns what a pay exception took.

The worker's ``exception_refund`` task sends them (:mod:`paycore.jobs.handlers`); the
channel answers by query or by callback. Both end in :func:`post_exception_refund`,
keyed ``("exception_refund", pay_item_id)``, so an item's money goes back once,
whichever answer arrives first. A callback is checked against the part like every
other channel result (:mod:`paycore.settle_rules`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import postings
from . import status as st
from .anomalies import record_anomaly
from .channels import ChannelResult
from .context import BizContext
from .db.schema import PayException, PayItem, PayOrder
from .errors import PayOrderNotFound
from .ledger import AccountRef, Ledger, channel_clearing
from .settle_rules import describe, judge_success
from .stamps import Stamps
from .views import order_context

_REFUND_TXN = re.compile(r"x([0-9]{1,19})")


def refund_txn_no(pay_item_id: int) -> str:
    """Our channel number for the compensation refund of one pay item."""
    return f"x{pay_item_id}"


def item_of_refund_txn(channel_txn_no: str) -> int | None:
    """The pay item a compensation refund's channel number stands for, else None."""
    found = _REFUND_TXN.fullmatch(channel_txn_no)
    return int(found.group(1)) if found else None


@dataclass(frozen=True, slots=True)
class RefundTarget:
    """One pay item's compensation refund: what it returns, for which exception."""

    exception: PayException
    po: PayOrder
    item: PayItem
    amount: int


def refund_target(s: Session, item_id: int, pay_org_no: str) -> RefundTarget | None:
    """The full-refund exception that asks for ``item_id``'s money back at ``pay_org_no``:
    its own exception, or its order's (whose refund returns every successful item)."""
    item = s.get(PayItem, item_id)
    # only a part a channel settles has a channel transaction (whatever its tool's name)
    if item is None or item.pay_org_no != pay_org_no or item.channel_txn_no is None:
        return None
    po = s.get_one(PayOrder, item.pay_order_id)
    exceptions = s.execute(
        select(PayException)
        .where(PayException.pay_order_id == po.id, PayException.resolution == "full_refund")
        .order_by(PayException.id)
    ).scalars()
    for exc in exceptions:
        if exc.pay_item_id == item.id:
            return RefundTarget(exc, po, item, exc.amount_taken)
        if exc.pay_item_id is None and item.status == st.SUCCESS:
            return RefundTarget(exc, po, item, item.settled_amount or item.amount)
    return None


def post_exception_refund(
    ledger: Ledger,
    s: Session,
    po: PayOrder,
    ctx: BizContext,
    *,
    item_id: int,
    to_account: AccountRef,
    amount: int,
    memo: str,
) -> bool:
    """Post the return of ``amount`` from transit to ``to_account``; False if it was
    posted before (by the task or by the channel's callback)."""
    posted = ledger.post(
        s,
        biz_type="exception_refund",
        biz_key=str(item_id),
        ctx=ctx,
        currency=po.currency,
        trade_id=po.trade_id,
        legs=postings.exception_refund(to_account, amount),
        memo=memo,
    )
    return posted is not None


def settle_refund_callback(
    ledger: Ledger, stamps: Stamps, s: Session, r: ChannelResult, item_id: int
) -> str:
    """A channel's callback for a compensation refund: ``settled`` (posted now),
    ``duplicate`` (posted before), ``pending`` (not a success: the task keeps asking),
    or ``exception`` (the amount or currency is not the part's: recorded, nothing posted).
    """
    target = refund_target(s, item_id, r.pay_org_no)
    if target is None:
        raise PayOrderNotFound("no pay item for this channel transaction")
    po, cur = target.po, target.po.currency
    if r.status != st.SUCCESS:
        return "pending"
    verdict = judge_success(target.amount, cur, r.amount, r.currency)
    if verdict != "match":
        record_anomaly(
            stamps,
            s,
            "amount_mismatch",
            biz_key=f"comp:{item_id}",
            po=po,
            item=target.item,
            amount_taken=0,
            detail="compensation refund: "
            + describe(verdict, target.amount, cur, r.amount, r.currency),
        )
        return "exception"
    posted = post_exception_refund(
        ledger,
        s,
        po,
        order_context(po),
        item_id=item_id,
        to_account=channel_clearing(r.pay_org_no, cur),
        amount=target.amount,
        memo=f"{target.exception.kind} exception {target.exception.id}: full refund",
    )
    return "settled" if posted else "duplicate"
