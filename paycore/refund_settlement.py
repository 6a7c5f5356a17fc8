"""Completing and failing refunds, and a channel's result for one refund item.

A refund is all or nothing: the instant parts (balance, points, coupon, ...) of a refund
that also has channel parts wait in the platform transit account until the channel has
refunded its parts
(:func:`finish_refund`), and goes back to the merchant side with them if the channel
refuses (:func:`fail_refund`; a refund reported failed must not have moved any money).
Used by :class:`paycore.settlement.SettlementService` only.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import postings
from . import status as st
from .anomalies import record_anomaly
from .channels import ChannelResult
from .context import BizContext, use_context
from .db.schema import PayItem, PayOrder, Trade
from .deps import CoreDeps
from .ledger import AccountRef
from .notify.outbox import merchant_notify_url, notify_pay_order
from .settle_rules import Verdict, describe, judge_success
from .tools import env_of, tools_of
from .views import locked_trade, trade_context


def refund_source(trade: Trade) -> AccountRef:
    """Where ``trade``'s refunded money is taken from, and released back to."""
    return postings.merchant_side(trade.trade_type, trade.status, trade.merchant_id, trade.currency)


def settle_refund_item(
    deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, r: ChannelResult
) -> str:
    """Settle the channel's answer to one refund item (called with the order locked).

    A success at another amount or currency settles nothing (:mod:`paycore.settle_rules`):
    the item's hold stays in transit for a human, the refund fails, and its other parts
    go back to the merchant side.
    """
    refund_trade = s.get_one(Trade, po.trade_id)
    ctx = trade_context(refund_trade)
    success = r.status == st.SUCCESS
    if item.status != st.PROCESSING:
        if item.status == r.status and (not success or r.amount == item.settled_amount):
            return "duplicate"
        record_anomaly(
            deps,
            s,
            "other",
            biz_key=f"refund-conflict:{item.id}",
            po=po,
            item=item,
            amount_taken=0,
            resolution="manual",
            detail=f"channel says {r.status} {r.amount} {r.currency} for a "
            f"refund already {item.status}",
        )
        return "exception"
    with use_context(ctx):
        if not success:  # the channel refused: all of the money goes back
            fail_refund(deps, s, po, refund_trade, ctx, [item], "channel_refused")
            return "failed"
        verdict = judge_success(item.amount, po.currency, r.amount, r.currency)
        if verdict != "match":
            _mismatch(deps, s, po, item, r, verdict, refund_trade, ctx)
            return "exception"
        _item_done(deps, s, po, item, refund_trade, ctx)
        return "settled"


def _mismatch(
    deps: CoreDeps,
    s: Session,
    po: PayOrder,
    item: PayItem,
    r: ChannelResult,
    verdict: Verdict,
    refund_trade: Trade,
    ctx: BizContext,
) -> None:
    """The channel refunded another amount or currency: the item's hold stays in transit
    for a human, and the refund fails."""
    st.cas_status(
        s,
        PayItem,
        item.id,
        st.PROCESSING,
        st.FAILED,
        st.PAY_TRANSITIONS,
        finished_at=deps.clock(),
    )
    detail = describe(verdict, item.amount, po.currency, r.amount, r.currency)
    record_anomaly(
        deps,
        s,
        "amount_mismatch",
        biz_key=str(item.id),
        po=po,
        item=item,
        amount_taken=0,
        detail=f"{detail}; its hold of {item.amount} stays in transit",
    )
    fail_refund(deps, s, po, refund_trade, ctx, [], "amount_mismatch")


def _item_done(
    deps: CoreDeps, s: Session, po: PayOrder, item: PayItem, refund_trade: Trade, ctx: BizContext
) -> None:
    st.cas_status(
        s,
        PayItem,
        item.id,
        st.PROCESSING,
        st.SUCCESS,
        st.PAY_TRANSITIONS,
        finished_at=deps.clock(),
        settled_amount=item.amount,
    )
    deps.ledger.post(
        s,
        biz_type="refund_item",
        biz_key=str(item.id),
        ctx=ctx,
        currency=po.currency,
        trade_id=refund_trade.origin_trade_id,
        legs=postings.refund_to_channel(str(item.pay_org_no), po.currency, item.amount),
    )
    states = s.execute(
        select(PayItem.tool, PayItem.status).where(PayItem.pay_order_id == po.id)
    ).all()
    tools = tools_of(deps)
    if all(x.status == st.SUCCESS for x in states if tools.get(x.tool).settles_by_channel):
        # every channel part is back: now the held instant parts, then done
        finish_refund(deps, s, po, held_balance(deps, s, po), refund_trade.origin_trade_id, ctx)


def held_balance(deps: CoreDeps, s: Session, po: PayOrder) -> list[PayItem]:
    """The instant parts (balance, points, ...) of a refund still waiting for its
    channel parts."""
    tools = tools_of(deps)
    rows = s.execute(
        select(PayItem).where(PayItem.pay_order_id == po.id, PayItem.status == st.PROCESSING)
    ).scalars()
    return [i for i in rows if not tools.get(i.tool).settles_by_channel]


def finish_refund(
    deps: CoreDeps,
    s: Session,
    po: PayOrder,
    held: Sequence[PayItem],
    origin_id: int | None,
    ctx: BizContext,
) -> None:
    """Every channel part of the refund is back (or it had none): give the ``held``
    instant parts back to where their tools took them from, and complete the refund;
    the tools' reservations (a coupon) are released once this commits."""
    for item in held:
        _return_instant(deps, s, po, item, origin_id, ctx)
    tools_of(deps).release_after_commit(s, env_of(deps), held)
    _complete(deps, s, po)


def _return_instant(
    deps: CoreDeps,
    s: Session,
    po: PayOrder,
    item: PayItem,
    origin_id: int | None,
    ctx: BizContext,
) -> None:
    """Give an instant part of a refund back to its tool's source (the user's balance or
    points, coupon funding)."""
    to = tools_of(deps).get(item.tool).source(po.merchant_id, po.user_id, po.currency, item)
    deps.ledger.post(
        s,
        biz_type="refund_item",
        biz_key=str(item.id),
        ctx=ctx,
        currency=po.currency,
        trade_id=origin_id,
        legs=postings.refund_to_source(to, item.amount),
    )
    st.cas_status(
        s,
        PayItem,
        item.id,
        st.PROCESSING,
        st.SUCCESS,
        st.PAY_TRANSITIONS,
        finished_at=deps.clock(),
        settled_amount=item.amount,
    )


def _complete(deps: CoreDeps, s: Session, po: PayOrder) -> None:
    now = deps.clock()
    if st.cas_status(
        s, PayOrder, po.id, st.PROCESSING, st.SUCCESS, st.PAY_TRANSITIONS, finished_at=now
    ):
        st.cas_status(
            s,
            Trade,
            po.trade_id,
            st.PAYING,
            st.PAID,
            st.TRADE_TRANSITIONS,
            paid_amount=po.amount,
            updated_at=now,
        )
        url = merchant_notify_url(s, po.merchant_id)
        notify_pay_order(s, deps, po, "refund.succeeded", url)


def fail_refund(
    deps: CoreDeps,
    s: Session,
    po: PayOrder,
    refund_trade: Trade,
    ctx: BizContext,
    released: list[PayItem],
    error_code: str,
) -> None:
    """Fail the refund: ``released`` channel parts and the instant parts still held go
    back to the merchant side (all or nothing); the refund trade closes."""
    now = deps.clock()
    for part in released:
        st.cas_status(
            s, PayItem, part.id, st.PROCESSING, st.FAILED, st.PAY_TRANSITIONS, finished_at=now
        )
    assert refund_trade.origin_trade_id is not None  # a refund trade refunds its origin
    orig = locked_trade(s, refund_trade.origin_trade_id, for_update=deps.db.is_postgres)
    waiting = held_balance(deps, s, po)
    for part in waiting:
        st.cas_status(
            s, PayItem, part.id, st.PROCESSING, st.FAILED, st.PAY_TRANSITIONS, finished_at=now
        )
    _release(deps, s, po, orig, ctx, [*released, *waiting])
    if st.cas_status(
        s,
        PayOrder,
        po.id,
        st.PROCESSING,
        st.FAILED,
        st.PAY_TRANSITIONS,
        finished_at=now,
        error_code=error_code,
    ):
        st.cas_status(
            s, Trade, refund_trade.id, st.PAYING, st.CLOSED, st.TRADE_TRANSITIONS, updated_at=now
        )
        url = merchant_notify_url(s, po.merchant_id)
        notify_pay_order(s, deps, po, "refund.failed", url, error_code)


def _release(
    deps: CoreDeps,
    s: Session,
    po: PayOrder,
    orig: Trade,
    ctx: BizContext,
    parts: Sequence[PayItem],
) -> None:
    """Give ``parts`` back to the merchant side, and what they refunded back to the
    refunded trade and its items."""
    side = refund_source(orig)
    for part in parts:
        deps.ledger.post(
            s,
            biz_type="refund_release",
            biz_key=str(part.id),
            ctx=ctx,
            currency=po.currency,
            trade_id=orig.id,
            legs=postings.refund_release(side, part.amount),
        )
        s.execute(
            update(Trade)
            .where(Trade.id == orig.id)
            .values(refunded_amount=Trade.refunded_amount - part.amount)
        )
        s.execute(
            update(PayItem)
            .where(PayItem.id == part.origin_item_id)
            .values(refunded_amount=PayItem.refunded_amount - part.amount)
        )
