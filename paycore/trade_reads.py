"""Reading trades: one trade, or a trade with its pay orders, refunds and origin chain."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db.engine import Database
from .db.schema import PayItem, PayItemReroute, PayOrder, Trade
from .errors import TradeNotFound
from .models import RerouteView, TradeDetail, TradeView
from .views import find_trade, pay_order_view, trade_view


class TradeReader:
    """Reads trades from ``db``; what the trade, pay and refund services share."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, merchant_id: str, out_trade_no: str) -> TradeView:
        """The merchant's trade; :class:`TradeNotFound` if there is none."""
        with self.db.reading() as s:
            t = find_trade(s, merchant_id, out_trade_no)
            if t is None:
                raise TradeNotFound("trade not found")
            return trade_view(t)

    def detail(self, merchant_id: str, out_trade_no: str) -> TradeDetail:
        """The trade with its pay orders, its refunds, and its origin chain up to the root,
        read from one snapshot (a callback committing midway cannot tear the view)."""
        with self.db.session() as s:
            if self.db.is_postgres:
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            t = find_trade(s, merchant_id, out_trade_no)
            if t is None:
                raise TradeNotFound("trade not found")
            return trade_detail(s, t)


def trade_detail(s: Session, t: Trade) -> TradeDetail:
    """``t`` with its pay orders, its refunds (each in detail) and its origin chain."""
    orders = (
        s.execute(select(PayOrder).where(PayOrder.trade_id == t.id).order_by(PayOrder.id))
        .scalars()
        .all()
    )
    items = (
        s.execute(select(PayItem).where(PayItem.pay_order_id.in_([o.id for o in orders])))
        .scalars()
        .all()
        if orders
        else []
    )
    moved = _reroutes(s, [i.id for i in items])
    views = tuple(
        pay_order_view(o, [i for i in items if i.pay_order_id == o.id], moved) for o in orders
    )
    children = (
        s.execute(
            select(Trade)
            .where(Trade.origin_trade_id == t.id, Trade.trade_type == "refund")
            .order_by(Trade.id)
        )
        .scalars()
        .all()
    )
    return TradeDetail(
        trade_view(t), views, tuple(trade_detail(s, c) for c in children), origin_chain(s, t)
    )


def _reroutes(s: Session, item_ids: list[int]) -> dict[int, RerouteView]:
    """The moves of these items to another org (at most one each), by item id."""
    if not item_ids:
        return {}
    rows = s.execute(select(PayItemReroute).where(PayItemReroute.item_id.in_(item_ids))).scalars()
    return {
        r.item_id: RerouteView(r.from_org, r.from_txn, r.to_org, r.to_txn, r.reason, r.created_at)
        for r in rows
    }


def origin_chain(s: Session, t: Trade, limit: int = 32) -> tuple[TradeView, ...]:
    """The trades ``t`` descends from, its parent first, up to the root (at most ``limit``)."""
    chain: list[TradeView] = []
    cursor = t
    while cursor.origin_trade_id is not None and len(chain) < limit:
        parent = s.get(Trade, cursor.origin_trade_id)
        if parent is None:
            break
        chain.append(trade_view(parent))
        cursor = parent
    return tuple(chain)
