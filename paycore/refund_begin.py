"""Beginning a refund, in one transaction under the refunded trade's lock.

The refunded trade's ``refunded_amount`` is raised by a conditional UPDATE that cannot
pass ``paid_amount``; the whole refund is held from the merchant side in transit; the
refund is spread over the items that paid (:func:`paycore.pay_rules.split_refund`), each
share a refund item: a share of a tool that settles by the channel becomes a request to
submit after commit, instant shares (balance, points, coupon, ...) are held in transit
until the channel shares are back (a refund without channel shares completes at once).
Used by :class:`paycore.refunds.RefundService` only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import postings
from . import status as st
from .channels import ChannelRequest
from .context import BizContext
from .db.schema import PayItem, PayOrder, Trade
from .deps import CoreDeps
from .errors import RefundExceedsPaid, WrongState
from .models import RefundRequest
from .pay_rules import RefundShare, split_refund
from .refund_settlement import refund_source
from .settlement import SettlementService
from .tools import ToolRegistry, tools_of
from .views import locked_trade, trade_context


def begin_refund(
    deps: CoreDeps,
    settlement: SettlementService,
    s: Session,
    trade_id: int,
    req: RefundRequest,
    fingerprint: str,
) -> list[ChannelRequest]:
    """Write the refund of ``req.amount`` of trade ``trade_id``; returns the channel
    requests to submit once this transaction has committed."""
    orig = locked_trade(s, trade_id, for_update=deps.db.is_postgres)
    if orig.status not in (st.PAID, st.CONFIRMED):
        raise WrongState(f"trade is {orig.status}; only a paid trade can be refunded")
    raised = s.execute(
        update(Trade)
        .where(Trade.id == orig.id, Trade.refunded_amount + req.amount <= Trade.paid_amount)
        .values(refunded_amount=Trade.refunded_amount + req.amount)
    )
    if raised.rowcount == 0:  # type: ignore[attr-defined]
        raise RefundExceedsPaid("refund exceeds the amount paid and not yet refunded")
    source = s.execute(
        select(PayOrder).where(
            PayOrder.trade_id == orig.id,
            PayOrder.status == st.SUCCESS,
            PayOrder.pay_type == "pay",
        )
    ).scalar_one()
    sources = (
        s.execute(select(PayItem).where(PayItem.pay_order_id == source.id).order_by(PayItem.seq))
        .scalars()
        .all()
    )
    shares = split_refund(req.amount, ((i.amount, i.refunded_amount) for i in sources))
    ctx = trade_context(orig)
    tools = tools_of(deps)
    by_channel = {p for p, _ in shares if tools.get(sources[p].tool).settles_by_channel}
    admit_channels(deps, ctx, {sources[p].pay_org_no for p in by_channel})
    now = deps.clock()
    refund_trade = _refund_trade(deps, orig, req, fingerprint, now)
    s.add(refund_trade)
    s.flush()  # no ORM relationships: flush parents before children
    po = _refund_order(deps, orig, source, refund_trade, req, fingerprint, now)
    s.add(po)
    s.flush()
    deps.ledger.post(
        s,
        biz_type="refund_hold",
        biz_key=str(po.id),
        ctx=ctx,
        currency=orig.currency,
        trade_id=orig.id,
        legs=postings.refund_hold(refund_source(orig), req.amount),
    )
    held, requests = _refund_items(deps, tools, s, sources, shares, po, refund_trade, now)
    if not requests:  # instant parts only: done now; else all or nothing with the channel
        settlement.finish_refund(s, po, held, orig.id, ctx)
    return requests


def admit_channels(deps: CoreDeps, ctx: BizContext, orgs: Iterable[str | None]) -> None:
    """``link.refund``'s admission to each channel the refund will call: switch, limit
    and breaker of ``channel.<org>`` (strong: a refusal raises
    :class:`~stability.errors.DependencyFailed` naming the channel, before anything of
    this refund is written)."""
    if deps.guard is None:
        return
    labels = ctx.as_labels()
    for org in sorted({str(o) for o in orgs if o}):
        deps.guard.admit(f"channel.{org}", caller="link.refund", labels=labels)


def _refund_trade(
    deps: CoreDeps, orig: Trade, req: RefundRequest, fingerprint: str, now: datetime
) -> Trade:
    return Trade(
        id=deps.ids.next_id(),
        merchant_id=orig.merchant_id,
        out_trade_no=req.out_refund_no,
        trade_type="refund",
        status=st.PAYING,
        amount=req.amount,
        currency=orig.currency,
        paid_amount=0,
        refunded_amount=0,
        user_id=orig.user_id,
        order_type=orig.order_type,
        sub_type=orig.sub_type,
        pay_org_no=orig.pay_org_no,
        origin_trade_id=orig.id,
        root_trade_id=orig.root_trade_id,
        request_hash=fingerprint,
        subject=req.reason,
        created_at=now,
        updated_at=now,
    )


def _refund_order(
    deps: CoreDeps,
    orig: Trade,
    source: PayOrder,
    refund_trade: Trade,
    req: RefundRequest,
    fingerprint: str,
    now: datetime,
) -> PayOrder:
    return PayOrder(
        id=deps.ids.next_id(),
        trade_id=refund_trade.id,
        merchant_id=orig.merchant_id,
        out_pay_no=f"refund:{req.out_refund_no}",
        pay_type="refund",
        status=st.PROCESSING,
        amount=req.amount,
        currency=orig.currency,
        user_id=orig.user_id,
        order_type=orig.order_type,
        sub_type=orig.sub_type,
        pay_org_no=source.pay_org_no,
        origin_pay_order_id=source.id,
        request_hash=fingerprint,
        created_at=now,
    )


def _refund_items(
    deps: CoreDeps,
    tools: ToolRegistry,
    s: Session,
    sources: Sequence[PayItem],
    shares: Sequence[RefundShare],
    po: PayOrder,
    refund_trade: Trade,
    now: datetime,
) -> tuple[list[PayItem], list[ChannelRequest]]:
    """One refund item per paying item's share: the instant ones (held until the channel
    ones are back) and the channel requests."""
    held: list[PayItem] = []
    requests: list[ChannelRequest] = []
    for seq, take in shares:
        src = sources[seq]
        moved = s.execute(
            update(PayItem)
            .where(PayItem.id == src.id, PayItem.refunded_amount + take <= PayItem.amount)
            .values(refunded_amount=PayItem.refunded_amount + take)
        )
        if moved.rowcount == 0:  # type: ignore[attr-defined]
            raise RefundExceedsPaid("pay tool already refunded")
        by_channel = tools.get(src.tool).settles_by_channel
        item = _refund_item(deps, po, src, seq, take, now, by_channel)
        s.add(item)
        s.flush()
        if not by_channel:
            held.append(item)  # returned at once, or with the channel parts
        else:
            requests.append(_refund_request(po, refund_trade, src, item))
    return held, requests


def _refund_item(
    deps: CoreDeps,
    po: PayOrder,
    src: PayItem,
    seq: int,
    take: int,
    now: datetime,
    by_channel: bool,
) -> PayItem:
    item_id = deps.ids.next_id()
    return PayItem(
        id=item_id,
        pay_order_id=po.id,
        merchant_id=po.merchant_id,
        seq=seq,
        tool=src.tool,
        status=st.PROCESSING,
        amount=take,
        refunded_amount=0,
        origin_item_id=src.id,
        pay_org_no=src.pay_org_no,
        channel_txn_no=str(item_id) if by_channel else None,
        tool_ref=src.tool_ref,
        created_at=now,
    )


def _refund_request(
    po: PayOrder, refund_trade: Trade, src: PayItem, item: PayItem
) -> ChannelRequest:
    return ChannelRequest(
        kind="refund",
        pay_org_no=str(src.pay_org_no),
        channel_txn_no=str(item.id),
        amount=item.amount,
        currency=po.currency,
        merchant_id=po.merchant_id,
        trade_id=refund_trade.id,
        pay_order_id=po.id,
        origin_channel_txn_no=src.channel_txn_no,
    )
