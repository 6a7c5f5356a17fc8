"""Views → JSON-ready bodies. Ids are strings: 64-bit ids do not survive JavaScript."""

from __future__ import annotations

from dataclasses import asdict

from ..models import PayOrderView, TradeDetail, TradeView
from .schemas import PayItemOut, PayOrderOut, RerouteOut, TradeDetailOut, TradeOut


def _id(value: int | None) -> str | None:
    return None if value is None else str(value)


def trade_out(t: TradeView) -> TradeOut:
    return TradeOut(
        id=str(t.id),
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
        origin_trade_id=_id(t.origin_trade_id),
        root_trade_id=str(t.root_trade_id),
        subject=t.subject,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


def pay_order_out(p: PayOrderView) -> PayOrderOut:
    return PayOrderOut(
        id=str(p.id),
        trade_id=str(p.trade_id),
        out_pay_no=p.out_pay_no,
        pay_type=p.pay_type,
        status=p.status,
        amount=p.amount,
        currency=p.currency,
        pay_org_no=p.pay_org_no,
        created_at=p.created_at,
        finished_at=p.finished_at,
        error_code=p.error_code,
        items=[
            PayItemOut(
                id=str(i.id),
                tool=i.tool,
                status=i.status,
                amount=i.amount,
                refunded_amount=i.refunded_amount,
                pay_org_no=i.pay_org_no,
                channel_txn_no=i.channel_txn_no,
                tool_ref=i.tool_ref,
                reroute=None if i.reroute is None else RerouteOut(**asdict(i.reroute)),
            )
            for i in p.items
        ],
        skipped_tools=list(p.skipped_tools),
    )


def detail_out(d: TradeDetail) -> TradeDetailOut:
    return TradeDetailOut(
        trade=trade_out(d.trade),
        pay_orders=[pay_order_out(p) for p in d.pay_orders],
        refunds=[detail_out(r) for r in d.refunds],
        origin_chain=[trade_out(t) for t in d.origin_chain],
    )
