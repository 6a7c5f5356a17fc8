"""Beginning a pay order, in the transaction that moves its trade to *paying*.

Instant parts (balance, points, coupon, ...: each tool's ``take_legs``) are taken at once
(into transit); parts that settle by a channel's result become the requests the pay
service submits after commit; a payout's amount is held from the payer's balance. An
order with no channel part completes in the same transaction. Used by
:class:`paycore.payments.PayService` only.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from . import postings
from . import status as st
from .channels import ChannelRequest
from .context import BizContext
from .db.schema import PayItem, PayOrder, Trade
from .db.util import execute_core, row_values
from .deps import CoreDeps
from .errors import WrongState
from .models import PayOrderView, PayRequest, PayTool, TradeView
from .pay_rules import PAY_TYPE
from .settlement import SettlementService
from .tools import ToolRegistry, tools_of
from .views import pay_order_view

_INSERT_PAY_ORDER = insert(PayOrder)
_INSERT_PAY_ITEMS = insert(PayItem)


def begin_pay(
    deps: CoreDeps,
    settlement: SettlementService,
    s: Session,
    trade: TradeView,
    req: PayRequest,
    ctx: BizContext,
    fingerprint: str,
    *,
    parts: Sequence[PayTool] | None = None,
    alternatives: tuple[str, ...] = (),
    skipped: Sequence[str] = (),
) -> tuple[PayOrderView, list[ChannelRequest]]:
    """Move the trade to paying and write its pay order; returns the order's view and
    the channel requests to submit once this transaction has committed.

    ``parts``: the parts to pay with, as the tools prepared them (default ``req.tools``);
    ``alternatives``: the routed orgs left after ``ctx.pay_org_no``, on a pay's channel
    requests; ``skipped``: the weak tools the parts went on without (stored on the order)."""
    now = deps.clock()
    tools = tools_of(deps)
    if not st.cas_status(
        s, Trade, trade.id, st.CREATED, st.PAYING, st.TRADE_TRANSITIONS, updated_at=now
    ):
        current = s.get_one(Trade, trade.id)
        raise WrongState(f"trade is {current.status}; it cannot be paid now")
    po = _new_order(deps, trade, req, ctx, fingerprint, now)
    po.skipped_tools = ",".join(skipped) or None
    execute_core(s, _INSERT_PAY_ORDER, row_values(po))  # kept out of the session: a
    # plain INSERT costs half the CPU of a flush; items follow their order (foreign key)
    items = _new_items(deps, tools, po, req.tools if parts is None else parts, ctx, now)
    execute_core(s, _INSERT_PAY_ITEMS, [row_values(i) for i in items])
    requests = [
        _take_or_request(deps, tools, s, trade, po, item, ctx, now, alternatives) for item in items
    ]
    channel = [r for r in requests if r is not None]
    if not channel:
        settlement.complete_pay(s, po)
    if channel and len(channel) == len(items):
        return pay_order_view(po, items), channel  # nothing changed since the insert
    s.flush()  # balance items settled and the order maybe completed, by UPDATE: reload
    s.expire_all()
    po_row = s.get_one(PayOrder, po.id)
    rows = s.execute(select(PayItem).where(PayItem.pay_order_id == po.id)).scalars().all()
    return pay_order_view(po_row, list(rows)), channel


def _new_order(
    deps: CoreDeps,
    trade: TradeView,
    req: PayRequest,
    ctx: BizContext,
    fingerprint: str,
    now: datetime,
) -> PayOrder:
    return PayOrder(
        id=deps.ids.next_id(),
        trade_id=trade.id,
        merchant_id=trade.merchant_id,
        out_pay_no=req.pay_no,
        pay_type=PAY_TYPE[trade.trade_type],
        status=st.PROCESSING,
        amount=trade.amount,
        currency=trade.currency,
        user_id=trade.user_id,
        order_type=ctx.order_type,
        sub_type=ctx.sub_type,
        pay_org_no=ctx.pay_org_no,
        request_hash=fingerprint,
        created_at=now,
    )


def _new_items(
    deps: CoreDeps,
    tools: ToolRegistry,
    po: PayOrder,
    parts: Sequence[PayTool],
    ctx: BizContext,
    now: datetime,
) -> list[PayItem]:
    items: list[PayItem] = []
    for seq, part in enumerate(parts):
        item_id = deps.ids.next_id()
        channel = tools.get(part.tool).settles_by_channel
        items.append(
            PayItem(
                id=item_id,
                pay_order_id=po.id,
                merchant_id=po.merchant_id,
                seq=seq,
                tool=part.tool,
                status=st.PROCESSING,
                amount=part.amount,
                refunded_amount=0,
                pay_org_no=ctx.pay_org_no if channel else None,
                channel_txn_no=str(item_id) if channel else None,
                tool_ref=part.ref,
                created_at=now,
            )
        )
    return items


def _take_or_request(
    deps: CoreDeps,
    tools: ToolRegistry,
    s: Session,
    trade: TradeView,
    po: PayOrder,
    item: PayItem,
    ctx: BizContext,
    now: datetime,
    alternatives: tuple[str, ...],
) -> ChannelRequest | None:
    """Take an instant part now (settling it), hold a payout's amount; a channel part's
    request to submit, else None."""
    tool, cur = tools.get(item.tool), trade.currency
    instant = not tool.settles_by_channel
    if instant:
        legs = tool.take_legs(trade, PayTool(item.tool, item.amount, item.tool_ref))
    elif po.pay_type == "withdraw":  # a payout holds the payer's balance meanwhile
        legs = postings.withdraw_hold(trade.merchant_id, trade.user_id, cur, item.amount)
    if instant or po.pay_type == "withdraw":
        deps.ledger.post(
            s,
            biz_type="pay_item" if instant else "withdraw_hold",
            biz_key=str(item.id),
            ctx=ctx,
            currency=cur,
            trade_id=trade.id,
            legs=legs,
        )
    if instant:
        st.cas_status(
            s,
            PayItem,
            item.id,
            st.PROCESSING,
            st.SUCCESS,
            st.PAY_TRANSITIONS,
            finished_at=now,
            settled_amount=item.amount,
        )
        return None
    payout = po.pay_type == "withdraw"
    return ChannelRequest(
        kind="withdraw" if payout else "pay",
        pay_org_no=ctx.pay_org_no,
        channel_txn_no=str(item.channel_txn_no),
        amount=item.amount,
        currency=cur,
        merchant_id=trade.merchant_id,
        trade_id=trade.id,
        pay_order_id=po.id,
        alternatives=() if payout else alternatives,
    )
