"""Trade core: create (idempotent on the merchant's number), confirm, close, query."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from . import status as st
from .context import BizContext
from .db.schema import PayItem, PayOrder, Trade
from .db.util import execute_core, row_values
from .errors import DuplicateKey, IdempotencyConflict, TradeNotFound, WrongState
from .ledger import credit, debit, fee_income, guarantee_escrow, merchant_payable
from .models import (
    CreateTrade,
    PayItemView,
    PayOrderView,
    RefundRequest,
    TradeDetail,
    TradeView,
)
from .money import fee_for

if TYPE_CHECKING:
    from .core import PayCore


def trade_view(t: Trade) -> TradeView:
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


def pay_order_view(po: PayOrder, items: list[PayItem]) -> PayOrderView:
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
        items=tuple(
            PayItemView(
                i.id, i.tool, i.status, i.amount, i.refunded_amount, i.pay_org_no, i.channel_txn_no
            )
            for i in sorted(items, key=lambda i: i.seq)
        ),
    )


def trade_context(t: Trade) -> BizContext:
    return BizContext(t.merchant_id, t.order_type, t.sub_type, t.pay_org_no)


# hot lookups are built once and run with parameters: building costs as much as running
_FIND_TRADE = select(Trade).where(
    Trade.merchant_id == bindparam("mid"), Trade.out_trade_no == bindparam("no")
)


_INSERT_TRADE = insert(Trade)


def find_trade(s: Session, merchant_id: str, out_trade_no: str) -> Trade | None:
    return s.execute(_FIND_TRADE, {"mid": merchant_id, "no": out_trade_no}).scalar_one_or_none()


class TradeService:
    """Creates and reads trades; every trade traces back to the one that started it."""

    def __init__(self, core: PayCore) -> None:
        self.core = core

    def create(self, merchant_id: str, req: CreateTrade) -> TradeView:
        """Create a trade, or return the same trade for a replay of the same request.

        A replay with a different body raises :class:`IdempotencyConflict`. A refund
        trade runs the refund itself (see :meth:`paycore.refunds.RefundService.refund`).
        """
        with self.core.metrics.timed("trade_create", req.pay_org_no):
            return self._create(merchant_id, req)

    def _create(self, merchant_id: str, req: CreateTrade) -> TradeView:
        ctx = BizContext(merchant_id, req.order_type, req.sub_type, req.pay_org_no)
        self.core.merchants.authorize(merchant_id, ctx)
        if req.trade_type == "refund":
            assert req.origin_out_trade_no is not None
            detail = self.core.refunds.refund(
                merchant_id,
                RefundRequest(req.origin_out_trade_no, req.out_trade_no, req.amount, req.subject),
            )
            return detail.trade
        fingerprint = req.fingerprint()
        now = self.core.clock()

        def work(s: Session) -> TradeView:
            origin_id, root_id = None, None
            if req.origin_out_trade_no:
                origin = find_trade(s, merchant_id, req.origin_out_trade_no)
                if origin is None:
                    raise TradeNotFound("origin trade not found")
                origin_id, root_id = origin.id, origin.root_trade_id
            tid = self.core.ids.next_id()
            trade = Trade(
                id=tid,
                merchant_id=merchant_id,
                out_trade_no=req.out_trade_no,
                trade_type=req.trade_type,
                status=st.CREATED,
                amount=req.amount,
                currency=req.currency,
                paid_amount=0,
                refunded_amount=0,
                user_id=req.user_id,
                payee_user_id=req.payee_user_id,
                order_type=req.order_type,
                sub_type=req.sub_type,
                pay_org_no=req.pay_org_no,
                origin_trade_id=origin_id,
                root_trade_id=root_id or tid,
                request_hash=fingerprint,
                subject=req.subject,
                created_at=now,
                updated_at=now,
            )
            execute_core(s, _INSERT_TRADE, row_values(trade))  # half the CPU of a flush
            return trade_view(trade)

        try:  # a trade without an origin is one INSERT: no transaction around it needed
            return self.core.db.run(work, one_statement=not req.origin_out_trade_no)
        except DuplicateKey:  # a replay, or a concurrent create with the same number won
            # (insert first, look up on conflict: a new trade, the usual case, costs one
            # round trip less than looking first)
            again = self._replay(merchant_id, req.out_trade_no, fingerprint)
            if again is None:
                raise
            return again

    def _replay(self, merchant_id: str, out_trade_no: str, fingerprint: str) -> TradeView | None:
        with self.core.db.reading() as s:
            t = find_trade(s, merchant_id, out_trade_no)
            if t is None:
                return None
            if t.request_hash != fingerprint:
                raise IdempotencyConflict("out_trade_no was used with a different request")
            return trade_view(t)

    def get(self, merchant_id: str, out_trade_no: str) -> TradeView:
        with self.core.db.reading() as s:
            t = find_trade(s, merchant_id, out_trade_no)
            if t is None:
                raise TradeNotFound("trade not found")
            return trade_view(t)

    def confirm(self, merchant_id: str, out_trade_no: str) -> TradeView:
        """Release a guaranteed trade's escrow to the merchant (net of fee). Repeatable."""
        trade = self.get(merchant_id, out_trade_no)
        if trade.trade_type != "guaranteed":
            raise WrongState("only guaranteed trades are confirmed")
        merchant = self.core.merchants.get(merchant_id)

        def work(s: Session) -> TradeView:
            t = s.execute(select(Trade).where(Trade.id == trade.id).with_for_update()).scalar_one()
            if t.status == st.CONFIRMED:
                return trade_view(t)
            if t.status != st.PAID:
                raise WrongState(f"trade is {t.status}, not paid")
            now = self.core.clock()
            st.cas_status(
                s, Trade, t.id, st.PAID, st.CONFIRMED, st.TRADE_TRANSITIONS, updated_at=now
            )
            amount = t.paid_amount - t.refunded_amount
            fee = fee_for(amount, merchant.fee_bps)
            if amount > 0:
                cur = t.currency
                self.core.ledger.post(
                    s,
                    biz_type="confirm",
                    biz_key=str(t.id),
                    ctx=trade_context(t),
                    currency=cur,
                    trade_id=t.id,
                    legs=[
                        debit(guarantee_escrow(merchant_id, cur), amount),
                        credit(merchant_payable(merchant_id, cur), amount - fee),
                        credit(fee_income(cur), fee),
                    ],
                )
            s.refresh(t)
            return trade_view(t)

        with self.core.lock.hold(
            f"trade:{trade.id}", ttl=self.core.lock_ttl, wait=self.core.lock_wait
        ):
            return self.core.db.run(work)

    def close(self, merchant_id: str, out_trade_no: str) -> TradeView:
        """Close a trade that was never paid."""
        trade = self.get(merchant_id, out_trade_no)

        def work(s: Session) -> TradeView:
            if not st.cas_status(
                s,
                Trade,
                trade.id,
                st.CREATED,
                st.CLOSED,
                st.TRADE_TRANSITIONS,
                updated_at=self.core.clock(),
            ):
                current = s.get(Trade, trade.id)
                if current is not None and current.status == st.CLOSED:
                    return trade_view(current)
                raise WrongState("only an unpaid trade can be closed")
            return trade_view(s.get_one(Trade, trade.id))

        return self.core.db.run(work)

    def detail(self, merchant_id: str, out_trade_no: str) -> TradeDetail:
        """The trade with its pay orders, its refunds, and its origin chain up to the root,
        read from one snapshot (a callback committing midway cannot tear the view)."""
        with self.core.db.session() as s:
            if self.core.db.is_postgres:
                s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            t = find_trade(s, merchant_id, out_trade_no)
            if t is None:
                raise TradeNotFound("trade not found")
            return self._detail(s, t)

    def _detail(self, s: Session, t: Trade) -> TradeDetail:
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
        views = tuple(
            pay_order_view(o, [i for i in items if i.pay_order_id == o.id]) for o in orders
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
        chain: list[TradeView] = []
        cursor = t
        while cursor.origin_trade_id is not None and len(chain) < 32:
            parent = s.get(Trade, cursor.origin_trade_id)
            if parent is None:
                break
            chain.append(trade_view(parent))
            cursor = parent
        return TradeDetail(
            trade_view(t), views, tuple(self._detail(s, c) for c in children), tuple(chain)
        )
