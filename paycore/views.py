"""Rows to the views the pay core answers with, and the trade lookups every service uses."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from .context import BizContext
from .db.schema import PayItem, PayOrder, Trade
from .models import PayItemView, PayOrderView, RerouteView, TradeView


def trade_view(t: Trade) -> TradeView:
    """The trade row as the API shows it."""
    return TradeView(
        id=t.id,
        merchant_id=t.merchant_id,
        out_trade_no=t.out_trade_no,
        trade_type=t.trade_type,
        status=t.status,
        amount=t.amount,
        currency=t.currency,
        paid_amount=t.paid_amount,
        refunded_amount=t.refunded_amount,
        user_id=t.user_id,
        payee_user_id=t.payee_user_id,
        order_type=t.order_type,
        sub_type=t.sub_type,
        pay_org_no=t.pay_org_no,
        origin_trade_id=t.origin_trade_id,
        root_trade_id=t.root_trade_id,
        subject=t.subject,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


def pay_order_view(
    po: PayOrder, items: list[PayItem], reroutes: Mapping[int, RerouteView] | None = None
) -> PayOrderView:
    """The pay order with its items (in ``seq`` order) as the API shows it; ``reroutes``:
    the items moved to another org, by item id."""
    moved = reroutes or {}
    return PayOrderView(
        id=po.id,
        trade_id=po.trade_id,
        out_pay_no=po.out_pay_no,
        pay_type=po.pay_type,
        status=po.status,
        amount=po.amount,
        currency=po.currency,
        pay_org_no=po.pay_org_no,
        created_at=po.created_at,
        finished_at=po.finished_at,
        error_code=po.error_code,
        skipped_tools=tuple(po.skipped_tools.split(",")) if po.skipped_tools else (),
        items=tuple(
            PayItemView(
                i.id,
                i.tool,
                i.status,
                i.amount,
                i.refunded_amount,
                i.pay_org_no,
                i.channel_txn_no,
                i.tool_ref,
                moved.get(i.id),
            )
            for i in sorted(items, key=lambda i: i.seq)
        ),
    )


def trade_context(t: Trade) -> BizContext:
    """The trade's four-element business identity."""
    return BizContext(t.merchant_id, t.order_type, t.sub_type, t.pay_org_no)


def order_context(po: PayOrder) -> BizContext:
    """The pay order's four-element business identity."""
    return BizContext(po.merchant_id, po.order_type, po.sub_type, po.pay_org_no)


# hot lookups are built once and run with parameters: building costs as much as running
_FIND_TRADE = select(Trade).where(
    Trade.merchant_id == bindparam("mid"), Trade.out_trade_no == bindparam("no")
)


def find_trade(s: Session, merchant_id: str, out_trade_no: str) -> Trade | None:
    """The merchant's trade numbered ``out_trade_no``, if any."""
    return s.execute(_FIND_TRADE, {"mid": merchant_id, "no": out_trade_no}).scalar_one_or_none()


def locked_trade(s: Session, trade_id: int, *, for_update: bool) -> Trade:
    """The trade row, locked for this transaction when ``for_update`` (PostgreSQL; SQLite
    serializes writers anyway)."""
    stmt = select(Trade).where(Trade.id == trade_id)
    if for_update:
        stmt = stmt.with_for_update()
    return s.execute(stmt).scalar_one()
