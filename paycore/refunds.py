"""Refunds: partial or full, several per trade, never past what was paid.

A refund locks the trade (distributed lock, then the row) and raises the trade's
``refunded_amount`` with a conditional UPDATE that cannot pass ``paid_amount``,
so even without the lock two refunds cannot both take the last of the money.

A refund is all or nothing: the balance part of a refund that also has channel parts
waits in the platform transit account until the channel has refunded its parts, and
goes back to the merchant side with them if the channel refuses (a refund reported
failed must not have moved any money).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from . import status as st
from .channels import ChannelRequest, ChannelResult
from .context import BizContext, use_context
from .db.schema import PayItem, PayOrder, Trade
from .errors import (
    DuplicateKey,
    IdempotencyConflict,
    RefundExceedsPaid,
    WrongState,
)
from .exceptions import record_exception
from .ledger import (
    AccountRef,
    channel_clearing,
    guarantee_escrow,
    merchant_payable,
    platform_transit,
    user_balance,
)
from .models import RefundRequest, TradeDetail
from .notify.outbox import merchant_notify_url, notify_pay_order
from .settle_rules import describe, judge_success
from .trades import find_trade, trade_context

if TYPE_CHECKING:
    from .core import PayCore

log = logging.getLogger(__name__)
REFUNDABLE = ("instant", "guaranteed")


def _merchant_side(trade: Trade) -> AccountRef:
    """Where refunded money is taken from: escrow until confirmed, then the merchant."""
    if trade.trade_type == "guaranteed" and trade.status == st.PAID:
        return guarantee_escrow(trade.merchant_id, trade.currency)
    return merchant_payable(trade.merchant_id, trade.currency)


class RefundService:
    def __init__(self, core: PayCore) -> None:
        self.core = core

    def refund(self, merchant_id: str, req: RefundRequest) -> TradeDetail:
        """Refund ``req.amount`` of a paid trade; returns the refund trade's detail.

        Idempotent on ``out_refund_no``. Raises :class:`RefundExceedsPaid` when the
        refund would take the total past the paid amount.
        """
        with self.core.metrics.timed("refund"):
            return self._refund(merchant_id, req)

    def _refund(self, merchant_id: str, req: RefundRequest) -> TradeDetail:
        fingerprint = req.fingerprint()
        replay = self._replay(merchant_id, req.out_refund_no, fingerprint)
        if replay:
            return replay
        original = self.core.trades.get(merchant_id, req.out_trade_no)
        if original.trade_type not in REFUNDABLE:
            raise WrongState(f"a {original.trade_type} trade cannot be refunded")
        with self.core.trade_lock(original.id, link="link.refund"):
            replay = self._replay(merchant_id, req.out_refund_no, fingerprint)
            if replay:
                return replay
            try:
                requests = self.core.db.run(lambda s: self._begin(s, original.id, req, fingerprint))
            except DuplicateKey:
                replay = self._replay(merchant_id, req.out_refund_no, fingerprint)
                if replay is None:
                    raise
                return replay
        self.core.payments._submit(requests)
        return self.core.trades.detail(merchant_id, req.out_refund_no)

    def _replay(self, merchant_id: str, out_refund_no: str, fingerprint: str) -> TradeDetail | None:
        with self.core.db.session() as s:
            t = find_trade(s, merchant_id, out_refund_no)
            if t is None:
                return None
            if t.trade_type != "refund" or t.request_hash != fingerprint:
                raise IdempotencyConflict("out_refund_no was used with a different request")
        return self.core.trades.detail(merchant_id, out_refund_no)

    def _begin(
        self, s: Session, trade_id: int, req: RefundRequest, fingerprint: str
    ) -> list[ChannelRequest]:
        stmt = select(Trade).where(Trade.id == trade_id)
        if self.core.db.is_postgres:
            stmt = stmt.with_for_update()
        orig = s.execute(stmt).scalar_one()
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
        now = self.core.clock()
        ctx = trade_context(orig)
        refund_trade = Trade(
            id=self.core.ids.next_id(),
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
        s.add(refund_trade)
        s.flush()  # no ORM relationships: flush parents before children
        po = PayOrder(
            id=self.core.ids.next_id(),
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
        s.add(po)
        s.flush()
        cur = orig.currency
        self.core.ledger.move(
            s,
            biz_type="refund_hold",
            biz_key=str(po.id),
            ctx=ctx,
            currency=cur,
            trade_id=orig.id,
            source=_merchant_side(orig),
            target=platform_transit(cur),
            amount=req.amount,
        )
        remaining = req.amount
        requests: list[ChannelRequest] = []
        held: list[PayItem] = []
        sources = (
            s.execute(
                select(PayItem).where(PayItem.pay_order_id == source.id).order_by(PayItem.seq)
            )
            .scalars()
            .all()
        )
        for seq, src in enumerate(sources):
            take = min(remaining, src.amount - src.refunded_amount)
            if take <= 0:
                continue
            moved = s.execute(
                update(PayItem)
                .where(PayItem.id == src.id, PayItem.refunded_amount + take <= PayItem.amount)
                .values(refunded_amount=PayItem.refunded_amount + take)
            )
            if moved.rowcount == 0:  # type: ignore[attr-defined]
                raise RefundExceedsPaid("pay tool already refunded")
            remaining -= take
            item_id = self.core.ids.next_id()
            item = PayItem(
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
                channel_txn_no=str(item_id) if src.tool == "channel" else None,
                created_at=now,
            )
            s.add(item)
            s.flush()
            if src.tool == "balance":
                held.append(item)  # returned at once, or with the channel parts (below)
            else:
                requests.append(
                    ChannelRequest(
                        kind="refund",
                        pay_org_no=str(src.pay_org_no),
                        channel_txn_no=str(item_id),
                        amount=take,
                        currency=cur,
                        merchant_id=po.merchant_id,
                        trade_id=refund_trade.id,
                        pay_order_id=po.id,
                        origin_channel_txn_no=src.channel_txn_no,
                    )
                )
            if remaining == 0:
                break
        if remaining:
            raise RefundExceedsPaid("refund exceeds what the pay tools can return")
        if not requests:  # balance only: done now; else all or nothing with the channel
            for item in held:
                self._return_balance(s, po, item, orig.id, ctx)
            self._complete(s, po)
        return requests

    def _return_balance(
        self, s: Session, po: PayOrder, item: PayItem, origin_id: int | None, ctx: BizContext
    ) -> None:
        """Give a balance part of a refund back to the user's balance."""
        cur = po.currency
        self.core.ledger.move(
            s,
            biz_type="refund_item",
            biz_key=str(item.id),
            ctx=ctx,
            currency=cur,
            trade_id=origin_id,
            source=platform_transit(cur),
            target=user_balance(po.merchant_id, po.user_id, cur),
            amount=item.amount,
        )
        st.cas_status(
            s,
            PayItem,
            item.id,
            st.PROCESSING,
            st.SUCCESS,
            st.PAY_TRANSITIONS,
            finished_at=self.core.clock(),
            settled_amount=item.amount,
        )

    def _held_balance(self, s: Session, po: PayOrder) -> list[PayItem]:
        """The balance parts of a refund still waiting for its channel parts."""
        return list(
            s.execute(
                select(PayItem).where(
                    PayItem.pay_order_id == po.id,
                    PayItem.tool == "balance",
                    PayItem.status == st.PROCESSING,
                )
            ).scalars()
        )

    def _complete(self, s: Session, po: PayOrder) -> None:
        now = self.core.clock()
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
            notify_pay_order(s, self.core, po, "refund.succeeded", url)

    def settle_item(self, s: Session, po: PayOrder, item: PayItem, r: ChannelResult) -> str:
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
            record_exception(
                self.core,
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
                self._fail_refund(s, po, refund_trade, ctx, [item], "channel_refused")
                return "failed"
            verdict = judge_success(item.amount, po.currency, r.amount, r.currency)
            if verdict != "match":
                st.cas_status(
                    s,
                    PayItem,
                    item.id,
                    st.PROCESSING,
                    st.FAILED,
                    st.PAY_TRANSITIONS,
                    finished_at=self.core.clock(),
                )
                detail = describe(verdict, item.amount, po.currency, r.amount, r.currency)
                record_exception(
                    self.core,
                    s,
                    "amount_mismatch",
                    biz_key=str(item.id),
                    po=po,
                    item=item,
                    amount_taken=0,
                    detail=f"{detail}; its hold of {item.amount} stays in transit",
                )
                self._fail_refund(s, po, refund_trade, ctx, [], "amount_mismatch")
                return "exception"
            self._refund_item_done(s, po, item, refund_trade, ctx)
            return "settled"

    def _refund_item_done(
        self, s: Session, po: PayOrder, item: PayItem, refund_trade: Trade, ctx: BizContext
    ) -> None:
        cur = po.currency
        st.cas_status(
            s,
            PayItem,
            item.id,
            st.PROCESSING,
            st.SUCCESS,
            st.PAY_TRANSITIONS,
            finished_at=self.core.clock(),
            settled_amount=item.amount,
        )
        self.core.ledger.move(
            s,
            biz_type="refund_item",
            biz_key=str(item.id),
            ctx=ctx,
            currency=cur,
            trade_id=refund_trade.origin_trade_id,
            source=platform_transit(cur),
            target=channel_clearing(str(item.pay_org_no), cur),
            amount=item.amount,
        )
        states = s.execute(
            select(PayItem.tool, PayItem.status).where(PayItem.pay_order_id == po.id)
        ).all()
        if all(x.status == st.SUCCESS for x in states if x.tool != "balance"):
            # every channel part is back: now the held balance parts, then done
            for part in self._held_balance(s, po):
                self._return_balance(s, po, part, refund_trade.origin_trade_id, ctx)
            self._complete(s, po)

    def _fail_refund(
        self,
        s: Session,
        po: PayOrder,
        refund_trade: Trade,
        ctx: BizContext,
        released: list[PayItem],
        error_code: str,
    ) -> None:
        """Fail the refund: ``released`` channel parts and the balance parts still held go
        back to the merchant side (all or nothing); the refund trade closes."""
        now = self.core.clock()
        cur = po.currency
        for part in released:
            st.cas_status(
                s, PayItem, part.id, st.PROCESSING, st.FAILED, st.PAY_TRANSITIONS, finished_at=now
            )
        stmt = select(Trade).where(Trade.id == refund_trade.origin_trade_id)
        if self.core.db.is_postgres:
            stmt = stmt.with_for_update()
        orig = s.execute(stmt).scalar_one()
        waiting = self._held_balance(s, po)
        for part in waiting:
            st.cas_status(
                s, PayItem, part.id, st.PROCESSING, st.FAILED, st.PAY_TRANSITIONS, finished_at=now
            )
        for part in (*released, *waiting):
            self.core.ledger.move(
                s,
                biz_type="refund_release",
                biz_key=str(part.id),
                ctx=ctx,
                currency=cur,
                trade_id=orig.id,
                source=platform_transit(cur),
                target=_merchant_side(orig),
                amount=part.amount,
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
                s,
                Trade,
                refund_trade.id,
                st.PAYING,
                st.CLOSED,
                st.TRADE_TRANSITIONS,
                updated_at=now,
            )
            url = merchant_notify_url(s, po.merchant_id)
            notify_pay_order(s, self.core, po, "refund.failed", url, error_code)
