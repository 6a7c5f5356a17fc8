"""Trade core: create (idempotent on the merchant's number), confirm, close, query."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from . import postings
from . import status as st
from .context import BizContext
from .db.schema import Trade
from .db.util import execute_core, row_values
from .deps import CoreDeps
from .errors import DuplicateKey, IdempotencyConflict, TradeNotFound, WrongState
from .models import CreateTrade, RefundRequest, TradeDetail, TradeView
from .trade_reads import TradeReader
from .views import find_trade, trade_context, trade_view

_INSERT_TRADE = insert(Trade)

#: runs a refund (:meth:`paycore.refunds.RefundService.refund`)
Refund = Callable[[str, RefundRequest], TradeDetail]


class TradeService:
    """Creates and reads trades; every trade traces back to the one that started it.

    ``refund`` runs a refund trade's refund: a refund trade is created by refunding.
    """

    def __init__(self, deps: CoreDeps, reader: TradeReader, refund: Refund) -> None:
        self.deps = deps
        self.reader = reader
        self.refund = refund

    def create(self, merchant_id: str, req: CreateTrade) -> TradeView:
        """Create a trade, or return the same trade for a replay of the same request.

        A replay with a different body raises :class:`IdempotencyConflict`. A refund
        trade runs the refund itself (see :meth:`paycore.refunds.RefundService.refund`).
        """
        with self.deps.metrics.timed("trade_create", req.pay_org_no):
            return self._create(merchant_id, req)

    def _create(self, merchant_id: str, req: CreateTrade) -> TradeView:
        ctx = BizContext(merchant_id, req.order_type, req.sub_type, req.pay_org_no)
        self.deps.merchants.authorize(merchant_id, ctx)
        if req.trade_type == "refund":
            assert req.origin_out_trade_no is not None
            detail = self.refund(
                merchant_id,
                RefundRequest(req.origin_out_trade_no, req.out_trade_no, req.amount, req.subject),
            )
            return detail.trade
        fingerprint = req.fingerprint()
        now = self.deps.clock()

        def work(s: Session) -> TradeView:
            trade = self._new_trade(s, merchant_id, req, fingerprint, now)
            execute_core(s, _INSERT_TRADE, row_values(trade))  # half the CPU of a flush
            return trade_view(trade)

        try:  # a trade without an origin is one INSERT: no transaction around it needed
            return self.deps.db.run(work, one_statement=not req.origin_out_trade_no)
        except DuplicateKey:  # a replay, or a concurrent create with the same number won
            # (insert first, look up on conflict: a new trade, the usual case, costs one
            # round trip less than looking first)
            again = self._replay(merchant_id, req.out_trade_no, fingerprint)
            if again is None:
                raise
            return again

    def _new_trade(
        self, s: Session, merchant_id: str, req: CreateTrade, fingerprint: str, now: datetime
    ) -> Trade:
        origin_id, root_id = None, None
        if req.origin_out_trade_no:
            origin = find_trade(s, merchant_id, req.origin_out_trade_no)
            if origin is None:
                raise TradeNotFound("origin trade not found")
            origin_id, root_id = origin.id, origin.root_trade_id
        tid = self.deps.ids.next_id()
        return Trade(
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

    def _replay(self, merchant_id: str, out_trade_no: str, fingerprint: str) -> TradeView | None:
        with self.deps.db.reading() as s:
            t = find_trade(s, merchant_id, out_trade_no)
            if t is None:
                return None
            if t.request_hash != fingerprint:
                raise IdempotencyConflict("out_trade_no was used with a different request")
            return trade_view(t)

    def get(self, merchant_id: str, out_trade_no: str) -> TradeView:
        """The merchant's trade; :class:`TradeNotFound` if there is none."""
        return self.reader.get(merchant_id, out_trade_no)

    def detail(self, merchant_id: str, out_trade_no: str) -> TradeDetail:
        """The trade with its pay orders, its refunds, and its origin chain up to the root,
        read from one snapshot (a callback committing midway cannot tear the view)."""
        return self.reader.detail(merchant_id, out_trade_no)

    def confirm(self, merchant_id: str, out_trade_no: str) -> TradeView:
        """Release a guaranteed trade's escrow to the merchant (net of fee). Repeatable."""
        trade = self.get(merchant_id, out_trade_no)
        if trade.trade_type != "guaranteed":
            raise WrongState("only guaranteed trades are confirmed")
        fee_bps = self.deps.merchants.get(merchant_id).fee_bps
        with self.deps.plain_trade_lock(trade.id):
            return self.deps.db.run(lambda s: self._confirm(s, trade.id, fee_bps))

    def _confirm(self, s: Session, trade_id: int, fee_bps: int) -> TradeView:
        t = s.execute(select(Trade).where(Trade.id == trade_id).with_for_update()).scalar_one()
        if t.status == st.CONFIRMED:
            return trade_view(t)
        if t.status != st.PAID:
            raise WrongState(f"trade is {t.status}, not paid")
        now = self.deps.clock()
        st.cas_status(s, Trade, t.id, st.PAID, st.CONFIRMED, st.TRADE_TRANSITIONS, updated_at=now)
        amount = t.paid_amount - t.refunded_amount
        if amount > 0:
            self.deps.ledger.post(
                s,
                biz_type="confirm",
                biz_key=str(t.id),
                ctx=trade_context(t),
                currency=t.currency,
                trade_id=t.id,
                legs=postings.confirm(t.merchant_id, t.currency, amount, fee_bps),
            )
        s.refresh(t)
        return trade_view(t)

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
                updated_at=self.deps.clock(),
            ):
                current = s.get(Trade, trade.id)
                if current is not None and current.status == st.CLOSED:
                    return trade_view(current)
                raise WrongState("only an unpaid trade can be closed")
            return trade_view(s.get_one(Trade, trade.id))

        return self.deps.db.run(work)
