"""A channel's result for one item of a pay order (pay, recharge or withdraw).

Applied with compare-and-set on the item, under the order's row lock (taken by
:class:`paycore.settlement.SettlementService`), so repeated or concurrent results settle
once. Money the channel took that the order cannot keep (a wrong amount, a success after
the item failed, a tool succeeding after its order failed) is recorded as a classified
anomaly for a full refund.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import postings
from . import status as st
from .anomalies import record_anomaly
from .channels import ChannelResult
from .context import BizContext
from .db.schema import PayItem, PayOrder
from .deps import CoreDeps
from .pay_settlement import complete_pay, fail_pay
from .settle_rules import TAKEABLE, Verdict, describe, judge_success


def settle_pay_item(
    deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
) -> str:
    """Settle ``r`` for ``item`` of ``po``: ``settled``, ``failed``, ``duplicate`` or
    ``exception`` (an anomaly recorded)."""
    if item.status != st.PROCESSING:
        return _after_final(deps, s, po, item, r, ctx)
    if r.status == st.SUCCESS:
        verdict = judge_success(item.amount, po.currency, r.amount, r.currency)
        if verdict != "match":
            return _mismatch(deps, s, po, item, r, ctx, verdict)
        return _succeed(deps, s, po, item, r.amount, ctx)
    return _item_failed(deps, s, po, item, ctx)


def _after_final(
    deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
) -> str:
    """A result for an item that is already final: a repeat, a late success, or a
    contradiction for a human."""
    success = r.status == st.SUCCESS
    if item.status == r.status and (not success or r.amount == item.settled_amount):
        return "duplicate"
    if item.status == st.FAILED and success and r.amount == item.settled_amount:
        return "duplicate"  # the amount mismatch again: taken and recorded already
    # a success for an item that failed without the channel having taken anything
    late = item.status == st.FAILED and success and item.settled_amount is None
    plausible = judge_success(item.amount, po.currency, r.amount, r.currency) in TAKEABLE
    if late and plausible and po.pay_type != "withdraw":
        return _late_success(deps, s, po, item, r, ctx)
    record_anomaly(
        deps,
        s,
        "other",
        biz_key=f"conflict:{item.id}",
        po=po,
        item=item,
        amount_taken=0,
        resolution="manual",
        detail=f"channel says {r.status} {r.amount} {r.currency} for an item already {item.status}",
    )
    return "exception"


def _mismatch(
    deps: CoreDeps,
    s: Session,
    po: PayOrder,
    item: PayItem,
    r: ChannelResult,
    ctx: BizContext,
    verdict: Verdict,
) -> str:
    """A success at another amount or currency: nothing settles at the wrong amount.

    A pay or recharge takes what the channel says it took when that is plausible
    (:data:`TAKEABLE`) and refunds it in full; the trade may be paid again. Otherwise
    (and for every withdraw) nothing is posted, the trade closes so the user's money is
    never held twice, and a human decides; a withdraw's hold stays in transit.
    """
    withdraw = po.pay_type == "withdraw"
    plausible = verdict in TAKEABLE
    take = plausible and not withdraw
    st.cas_status(
        s,
        PayItem,
        item.id,
        st.PROCESSING,
        st.FAILED,
        st.PAY_TRANSITIONS,
        finished_at=deps.clock(),
        settled_amount=r.amount if plausible else None,
    )
    if take:
        _take(deps, s, po, item, r.amount, ctx)
    detail = describe(verdict, item.amount, po.currency, r.amount, r.currency)
    if withdraw:
        detail += f"; the withdraw hold of {item.amount} stays in transit"
    record_anomaly(
        deps,
        s,
        "amount_mismatch",
        biz_key=str(item.id),
        po=po,
        item=item,
        amount_taken=r.amount if take else 0,
        detail=detail,
    )
    fail_pay(deps, s, po, "amount_mismatch", reopen=take)
    return "exception"


def _succeed(
    deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, amount: int, ctx: BizContext
) -> str:
    st.cas_status(
        s,
        PayItem,
        item.id,
        st.PROCESSING,
        st.SUCCESS,
        st.PAY_TRANSITIONS,
        finished_at=deps.clock(),
        settled_amount=amount,
    )
    if po.pay_type == "withdraw":
        deps.ledger.post(
            s,
            biz_type="withdraw_out",
            biz_key=str(item.id),
            ctx=ctx,
            currency=po.currency,
            trade_id=po.trade_id,
            legs=postings.withdraw_out(item.pay_org_no or ctx.pay_org_no, po.currency, amount),
        )
    else:
        _take(deps, s, po, item, amount, ctx)
    if po.status == st.FAILED:  # another tool failed first: this money is a partial pay
        record_anomaly(
            deps,
            s,
            "partial_payment",
            biz_key=f"late:{item.id}",
            po=po,
            item=item,
            amount_taken=amount,
            detail="a tool succeeded after its order had failed",
        )
        return "exception"
    complete_pay(deps, s, po)  # only when every item has succeeded
    return "settled"


def _item_failed(deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, ctx: BizContext) -> str:
    st.cas_status(
        s,
        PayItem,
        item.id,
        st.PROCESSING,
        st.FAILED,
        st.PAY_TRANSITIONS,
        finished_at=deps.clock(),
    )
    if po.pay_type == "withdraw":
        deps.ledger.post(
            s,
            biz_type="withdraw_release",
            biz_key=str(item.id),
            ctx=ctx,
            currency=po.currency,
            trade_id=po.trade_id,
            legs=postings.withdraw_release(po.merchant_id, po.user_id, po.currency, item.amount),
        )
    fail_pay(deps, s, po, "channel_failed")
    return "failed"


def _take(
    deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, amount: int, ctx: BizContext
) -> None:
    """Record money the channel collected: channel clearing → platform transit."""
    deps.ledger.post(
        s,
        biz_type="pay_item",
        biz_key=str(item.id),
        ctx=ctx,
        currency=po.currency,
        trade_id=po.trade_id,
        legs=postings.channel_part(item.pay_org_no or ctx.pay_org_no, po.currency, amount),
    )


def _late_success(
    deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
) -> str:
    """The channel took money for an item we had already failed."""
    _take(deps, s, po, item, r.amount, ctx)
    paid_elsewhere = s.execute(
        select(PayOrder.id).where(
            PayOrder.trade_id == po.trade_id,
            PayOrder.status == st.SUCCESS,
            PayOrder.id != po.id,
        )
    ).first()
    kind = "duplicate_payment" if paid_elsewhere else "other"
    record_anomaly(
        deps,
        s,
        kind,
        biz_key=f"late:{item.id}",
        po=po,
        item=item,
        amount_taken=r.amount,
        detail="channel success after the item failed",
    )
    return "exception"
