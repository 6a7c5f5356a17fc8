"""Late answers from a rerouted pay item's first org (see :mod:`paycore.pay_reroute`).

Settlement asks :func:`settle_rerouted` when a result names no current item. A late
``failed`` is a duplicate; a late ``success`` is money the first org took that the order
cannot keep: it is booked (channel clearing of that org -> transit, keyed
``reroute:<id>``) and recorded as an ``other`` anomaly (``biz_key`` ``reroute:<id>``),
refunded in full *at the first org* by the ``exception_refund`` task
(:func:`rerouted_refund`) as ``x<reroute id>`` against the old transaction, and posted
under the reroute's id (the item's own id keys the money at its new org).
"""

from __future__ import annotations

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from . import postings
from . import status as st
from .anomalies import record_anomaly
from .channels import ChannelResult
from .compensation import item_of_refund_txn, post_exception_refund
from .db.schema import PayException, PayItem, PayItemReroute, PayOrder
from .deps import CoreDeps
from .ledger import channel_clearing
from .settle_rules import TAKEABLE, describe, judge_success
from .views import order_context

_BY_FROM = select(PayItemReroute).where(
    PayItemReroute.from_org == bindparam("org"), PayItemReroute.from_txn == bindparam("txn")
)


def settle_rerouted(deps: CoreDeps, s: Session, r: ChannelResult) -> str | None:
    """Settle ``r`` if it names a rerouted item's old transaction (or the compensation
    refund of one); None when it names no reroute."""
    found = s.execute(_BY_FROM, {"org": r.pay_org_no, "txn": r.channel_txn_no})
    reroute = found.scalar_one_or_none()
    if reroute is not None:
        return _late_answer(deps, s, reroute, r)
    refund_of = item_of_refund_txn(r.channel_txn_no)
    if refund_of is None:
        return None
    reroute = s.get(PayItemReroute, refund_of)
    if reroute is None or reroute.from_org != r.pay_org_no:
        return None
    return _refund_answer(deps, s, reroute, r)


def _locked_order(deps: CoreDeps, s: Session, reroute: PayItemReroute) -> PayOrder:
    stmt = select(PayOrder).where(PayOrder.id == reroute.pay_order_id)
    return s.execute(stmt.with_for_update() if deps.db.is_postgres else stmt).scalar_one()


def _late_answer(deps: CoreDeps, s: Session, reroute: PayItemReroute, r: ChannelResult) -> str:
    """The first org's answer after the item moved on: a failure changes nothing; a
    success is booked and refunded in full there."""
    if r.status != st.SUCCESS:
        return "duplicate"
    po = _locked_order(deps, s, reroute)
    item = s.get_one(PayItem, reroute.item_id)
    verdict = judge_success(item.amount, po.currency, r.amount, r.currency)
    where = f"{reroute.from_org} took {r.amount} {r.currency} for {reroute.from_txn}"
    detail = f"{where} after the item moved to {reroute.to_org}"
    taken = r.amount if verdict in TAKEABLE else 0
    posted = None
    if taken:
        posted = deps.ledger.post(
            s,
            biz_type="pay_item",
            biz_key=rerouted_key(reroute.id),
            ctx=order_context(po),
            currency=po.currency,
            trade_id=po.trade_id,
            legs=postings.channel_part(reroute.from_org, po.currency, taken),
        )
        detail += f": refunded in full at {reroute.from_org}"
    else:
        detail += "; " + describe(verdict, item.amount, po.currency, r.amount, r.currency)
    recorded = record_anomaly(
        deps,
        s,
        "other",
        biz_key=rerouted_key(reroute.id),
        po=po,
        item=item,
        amount_taken=taken,
        detail=detail,
    )
    return "exception" if recorded or posted is not None else "duplicate"


def _refund_answer(deps: CoreDeps, s: Session, reroute: PayItemReroute, r: ChannelResult) -> str:
    """The first org's answer to the compensation refund of a rerouted item's money."""
    if r.status != st.SUCCESS:
        return "pending"  # the exception_refund task keeps asking
    po = _locked_order(deps, s, reroute)
    exc = _exception_of(s, reroute)
    if exc is None or exc.amount_taken <= 0:
        return "duplicate"
    verdict = judge_success(exc.amount_taken, po.currency, r.amount, r.currency)
    if verdict != "match":
        record_anomaly(
            deps,
            s,
            "amount_mismatch",
            biz_key=f"comp:{reroute.id}",
            po=po,
            item=s.get(PayItem, reroute.item_id),
            amount_taken=0,
            detail=f"compensation refund at {reroute.from_org}: "
            + describe(verdict, exc.amount_taken, po.currency, r.amount, r.currency),
        )
        return "exception"
    posted = post_exception_refund(
        deps.ledger,
        s,
        po,
        order_context(po),
        item_id=reroute.id,
        to_account=channel_clearing(reroute.from_org, po.currency),
        amount=exc.amount_taken,
        memo=f"other exception {exc.id}: full refund at {reroute.from_org}",
    )
    return "settled" if posted else "duplicate"


def rerouted_key(reroute_id: int) -> str:
    """The ledger and anomaly key of money a rerouted item's first org took."""
    return f"reroute:{reroute_id}"


def _exception_of(s: Session, reroute: PayItemReroute) -> PayException | None:
    stmt = select(PayException).where(
        PayException.kind == "other", PayException.biz_key == rerouted_key(reroute.id)
    )
    return s.execute(stmt).scalar_one_or_none()


def rerouted_refund(s: Session, exc: PayException) -> PayItemReroute | None:
    """The reroute whose first org took the money ``exc`` refunds, else None: such a
    refund goes to ``from_org`` against ``from_txn``, as ``x<reroute id>``, and is posted
    under the reroute's id (never the item's: the item's money is at its new org)."""
    if exc.kind != "other" or not exc.biz_key.startswith("reroute:"):
        return None
    try:
        reroute_id = int(exc.biz_key.removeprefix("reroute:"))
    except ValueError:
        return None
    return s.get(PayItemReroute, reroute_id)
