"""Completing and failing pay orders (pays, recharges, transfers, withdraws).

Money taken from a payer first lands in the platform transit account; it moves on to
the merchant (or escrow, or the payee) only when the whole pay order has succeeded
(:func:`complete_pay`). Money taken by a pay order that then fails stays in transit, is
recorded as a classified anomaly, and is refunded in full by compensation
(:func:`fail_pay`). Used by :class:`paycore.settlement.SettlementService` only.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import bindparam, exists, literal_column, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from . import postings
from . import status as st
from .anomalies import record_anomaly
from .db.schema import Merchant, PayItem, PayOrder, Trade
from .db.util import execute_core
from .deps import CoreDeps
from .errors import WrongState
from .notify.outbox import merchant_notify_url, notify_pay_order
from .pay_rules import taken_before_failure
from .views import order_context

# the order's compare-and-set and the check that all its items succeeded, in one statement
_COMPLETE_IF_ALL_ITEMS_SUCCEEDED = (
    update(PayOrder)
    .where(
        PayOrder.id == bindparam("po_id"),
        PayOrder.status == st.PROCESSING,
        ~exists().where(PayItem.pay_order_id == bindparam("po_id"), PayItem.status != st.SUCCESS),
    )
    .values(status=st.SUCCESS, finished_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)

# what completion needs, returned by the trade's paying -> paid compare-and-set: the
# trade's fields for the postings, the merchant's fee and notify URL (read in this
# transaction). Spelled out: RETURNING renders the updated table's columns unqualified,
# and a bare merchant_id in the subquery would be the merchants row's own (any merchant's
# fee).
_TRADE_MERCHANT: ColumnClause[Any] = literal_column("trades.merchant_id")
_PAID_TRADE_FIELDS = (
    Trade.trade_type,
    Trade.user_id,
    Trade.payee_user_id,
    *(
        select(col).where(Merchant.merchant_id == _TRADE_MERCHANT).scalar_subquery().label(col.key)
        for col in (Merchant.fee_bps, Merchant.notify_url)
    ),
)


def complete_pay(deps: CoreDeps, s: Session, po: PayOrder) -> None:
    """If every item has succeeded: move the money on from transit, mark order and
    trade paid. A no-op while an item is still processing (or the order is final)."""
    now = deps.clock()
    done = execute_core(s, _COMPLETE_IF_ALL_ITEMS_SUCCEEDED, {"po_id": po.id, "now": now})
    if done.rowcount != 1:
        return
    # the trade's compare-and-set returns what the postings need: no separate read
    trade = st.cas_status_returning(
        s,
        Trade,
        po.trade_id,
        st.PAYING,
        st.PAID,
        st.TRADE_TRANSITIONS,
        _PAID_TRADE_FIELDS,
        paid_amount=po.amount,
        updated_at=now,
    )
    if trade is None:
        raise WrongState(f"trade {po.trade_id} left paying while its pay order completed")
    legs = postings.pay_completion(
        postings.PayCompletion(
            pay_type=po.pay_type,
            trade_type=trade.trade_type,
            merchant_id=po.merchant_id,
            user_id=trade.user_id,
            payee_user_id=trade.payee_user_id,
            currency=po.currency,
            amount=po.amount,
            fee_bps=trade.fee_bps,
        )
    )
    if legs:
        deps.ledger.post(
            s,
            biz_type="pay_complete",
            biz_key=str(po.id),
            ctx=order_context(po),
            currency=po.currency,
            legs=legs,
            trade_id=po.trade_id,
        )
    # outbox row, same transaction
    notify_pay_order(s, deps, po, "trade.paid", trade.notify_url)


def fail_pay(
    deps: CoreDeps, s: Session, po: PayOrder, error_code: str, *, reopen: bool = True
) -> None:
    """The order failed: reopen the trade (or close it, when what the channel did is
    unknown and a second pay could take the money twice), classify what was taken.
    Withdraw holds are released by the caller, which knows whether they may be."""
    now = deps.clock()
    if not st.cas_status(
        s,
        PayOrder,
        po.id,
        st.PROCESSING,
        st.FAILED,
        st.PAY_TRANSITIONS,
        finished_at=now,
        error_code=error_code,
    ):
        return
    st.cas_status(
        s,
        Trade,
        po.trade_id,
        st.PAYING,
        st.CREATED if reopen else st.CLOSED,
        st.TRADE_TRANSITIONS,
        updated_at=now,
    )
    url = merchant_notify_url(s, po.merchant_id)
    notify_pay_order(s, deps, po, "trade.pay_failed", url, error_code)
    items = s.execute(select(PayItem).where(PayItem.pay_order_id == po.id)).scalars().all()
    taken = taken_before_failure(po.pay_type, ((i.status, i.settled_amount) for i in items))
    if taken:
        record_anomaly(
            deps,
            s,
            "partial_payment",
            biz_key=str(po.id),
            po=po,
            amount_taken=taken,
            detail=f"order failed ({error_code}) after {taken} was taken by other tools",
        )
