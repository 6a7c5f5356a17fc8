"""Pay core: pay a trade with one or more tools, and settle channel results.

Money taken from a payer first lands in the platform transit account; it moves
on to the merchant (or escrow, or the payee) only when the whole pay order has
succeeded. Money taken by a pay order that then fails stays in transit, is
recorded as a classified exception, and is refunded in full by compensation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import status as st
from .channels import ChannelRequest, ChannelResult
from .context import BizContext, use_context
from .db.schema import Merchant, PayItem, PayOrder, Trade
from .errors import (
    DuplicateKey,
    IdempotencyConflict,
    InvalidPayTools,
    PayOrderNotFound,
    WrongState,
)
from .exceptions import record_exception
from .ledger import (
    channel_clearing,
    credit,
    debit,
    fee_income,
    guarantee_escrow,
    merchant_payable,
    platform_transit,
    user_balance,
)
from .models import PayOrderView, PayRequest, TradeView
from .money import fee_for
from .notify.outbox import notify_pay_order
from .trades import pay_order_view

if TYPE_CHECKING:
    from .core import PayCore

log = logging.getLogger(__name__)

#: which tools each trade type may use, and the pay type it creates
ALLOWED_TOOLS = {
    "instant": {"balance", "channel"},
    "guaranteed": {"balance", "channel"},
    "recharge": {"channel"},
    "withdraw": {"channel"},
    "transfer": {"balance"},
}
PAY_TYPE = {
    "instant": "pay",
    "guaranteed": "pay",
    "recharge": "recharge",
    "withdraw": "withdraw",
    "transfer": "transfer",
}


def lock_order(s: Session, pay_order_id: int, postgres: bool) -> PayOrder:
    stmt = select(PayOrder).where(PayOrder.id == pay_order_id)
    if postgres:
        stmt = stmt.with_for_update()
    return s.execute(stmt).scalar_one()


class PayService:
    def __init__(self, core: PayCore) -> None:
        self.core = core

    # -- pay -------------------------------------------------------------------------------
    def pay(self, merchant_id: str, req: PayRequest) -> PayOrderView:
        """Pay a trade. Balance parts settle at once; channel parts answer *processing*.

        Idempotent on ``out_pay_no``: the same request returns the same pay order; a
        different request with that number raises :class:`IdempotencyConflict`.
        Two concurrent pays of one trade: one wins, the other gets :class:`WrongState`.
        """
        with self.core.metrics.timed("pay", req.pay_org_no or "") as timed:
            view = self._pay(merchant_id, req)
            if view.status == "processing":
                timed.outcome = "pending"  # the channel answers later, by callback
            return view

    def _pay(self, merchant_id: str, req: PayRequest) -> PayOrderView:
        fingerprint = req.fingerprint()
        replay = self._replay(merchant_id, req.pay_no, fingerprint)
        if replay:
            return replay
        trade = self.core.trades.get(merchant_id, req.out_trade_no)
        ctx = BizContext(
            merchant_id, trade.order_type, trade.sub_type, req.pay_org_no or trade.pay_org_no
        )
        self.core.merchants.authorize(merchant_id, ctx)
        self._check_tools(trade, req)
        self._preflight(trade, req, ctx)
        with (
            use_context(ctx),
            self.core.lock.hold(
                f"trade:{trade.id}", ttl=self.core.lock_ttl, wait=self.core.lock_wait
            ),
        ):
            replay = self._replay(merchant_id, req.pay_no, fingerprint)
            if replay:
                return replay
            try:
                view, requests = self.core.db.run(
                    lambda s: self._begin(s, trade, req, ctx, fingerprint)
                )
            except DuplicateKey:
                replay = self._replay(merchant_id, req.pay_no, fingerprint)
                if replay is None:
                    raise
                return replay
        self._submit(requests)
        return view

    def _preflight(self, trade: TradeView, req: PayRequest, ctx: BizContext) -> None:
        """Dependency checks before anything is written: risk (weak: falls back) and the
        channel's switch, limit and breaker (strong: fail fast, naming the channel)."""
        guard = self.core.guard
        labels = ctx.as_labels()
        if guard is None:
            self.core.risk.check(trade.user_id, trade.amount)
            return
        guard.call("risk", lambda: self.core.risk.check(trade.user_id, trade.amount),
                   caller="link.pay", labels=labels,
                   fallback=lambda: self.core.risk.fallback(trade.amount))  # fmt: skip
        if any(t.tool == "channel" for t in req.tools):
            guard.admit(f"channel.{ctx.pay_org_no}", caller="link.pay", labels=labels)

    def _check_tools(self, trade: TradeView, req: PayRequest) -> None:
        allowed = ALLOWED_TOOLS.get(trade.trade_type)
        if allowed is None:
            raise WrongState(f"a {trade.trade_type} trade is not paid directly")
        kinds = [t.tool for t in req.tools]
        if len(set(kinds)) != len(kinds) or not set(kinds) <= allowed:
            raise InvalidPayTools(
                f"a {trade.trade_type} trade takes each of {sorted(allowed)} at most once"
            )
        if sum(t.amount for t in req.tools) != trade.amount:
            raise InvalidPayTools("pay tool amounts must add up to the trade amount")

    def _replay(self, merchant_id: str, pay_no: str, fingerprint: str) -> PayOrderView | None:
        with self.core.db.session() as s:
            po = s.execute(
                select(PayOrder).where(
                    PayOrder.merchant_id == merchant_id, PayOrder.out_pay_no == pay_no
                )
            ).scalar_one_or_none()
            if po is None:
                return None
            if po.request_hash != fingerprint:
                raise IdempotencyConflict("out_pay_no was used with a different request")
            items = s.execute(select(PayItem).where(PayItem.pay_order_id == po.id)).scalars().all()
            return pay_order_view(po, list(items))

    def _begin(
        self, s: Session, trade: TradeView, req: PayRequest, ctx: BizContext, fingerprint: str
    ) -> tuple[PayOrderView, list[ChannelRequest]]:
        now = self.core.clock()
        if not st.cas_status(
            s, Trade, trade.id, st.CREATED, st.PAYING, st.TRADE_TRANSITIONS, updated_at=now
        ):
            current = s.get_one(Trade, trade.id)
            raise WrongState(f"trade is {current.status}; it cannot be paid now")
        pay_type = PAY_TYPE[trade.trade_type]
        po = PayOrder(
            id=self.core.ids.next_id(),
            trade_id=trade.id,
            merchant_id=trade.merchant_id,
            out_pay_no=req.pay_no,
            pay_type=pay_type,
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
        s.add(po)
        s.flush()  # no ORM relationships: flush parents before children
        items: list[PayItem] = []
        for seq, tool in enumerate(req.tools):
            item_id = self.core.ids.next_id()
            channel = tool.tool == "channel"
            items.append(
                PayItem(
                    id=item_id,
                    pay_order_id=po.id,
                    merchant_id=po.merchant_id,
                    seq=seq,
                    tool=tool.tool,
                    status=st.PROCESSING,
                    amount=tool.amount,
                    refunded_amount=0,
                    pay_org_no=ctx.pay_org_no if channel else None,
                    channel_txn_no=str(item_id) if channel else None,
                    created_at=now,
                )
            )
        s.add_all(items)
        s.flush()
        cur = trade.currency
        requests: list[ChannelRequest] = []
        for item in items:
            if item.tool == "balance":
                self.core.ledger.post(
                    s,
                    biz_type="pay_item",
                    biz_key=str(item.id),
                    ctx=ctx,
                    currency=cur,
                    trade_id=trade.id,
                    legs=[
                        debit(user_balance(trade.user_id, cur), item.amount),
                        credit(platform_transit(cur), item.amount),
                    ],
                )
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
            else:
                if pay_type == "withdraw":  # hold the payer's funds before paying out
                    self.core.ledger.post(
                        s,
                        biz_type="withdraw_hold",
                        biz_key=str(item.id),
                        ctx=ctx,
                        currency=cur,
                        trade_id=trade.id,
                        legs=[
                            debit(user_balance(trade.user_id, cur), item.amount),
                            credit(platform_transit(cur), item.amount),
                        ],
                    )
                requests.append(
                    ChannelRequest(
                        kind="withdraw" if pay_type == "withdraw" else "pay",
                        pay_org_no=ctx.pay_org_no,
                        channel_txn_no=str(item.channel_txn_no),
                        amount=item.amount,
                        currency=cur,
                        merchant_id=trade.merchant_id,
                        trade_id=trade.id,
                        pay_order_id=po.id,
                    )
                )
        if not requests:
            self._complete(s, po)
        s.flush()
        s.expire_all()
        po_row = s.get_one(PayOrder, po.id)
        rows = s.execute(select(PayItem).where(PayItem.pay_order_id == po.id)).scalars().all()
        return pay_order_view(po_row, list(rows)), requests

    def _submit(self, requests: list[ChannelRequest]) -> None:
        """Hand channel requests to the gateway after commit; failures wait for active query."""
        if self.core.channel is None:
            return
        for request in requests:
            try:
                self.core.channel.submit(request)
            except Exception:  # noqa: BLE001 - the order stays processing; active query settles it
                log.warning(
                    "channel submit failed for item %s at %s",
                    request.channel_txn_no,
                    request.pay_org_no,
                    exc_info=True,
                )

    # -- completion ------------------------------------------------------------------------
    def _complete(self, s: Session, po: PayOrder) -> None:
        """All items succeeded: move the money on from transit, mark order and trade paid."""
        now = self.core.clock()
        if not st.cas_status(
            s, PayOrder, po.id, st.PROCESSING, st.SUCCESS, st.PAY_TRANSITIONS, finished_at=now
        ):
            return
        trade = s.get_one(Trade, po.trade_id)
        cur, amount, mid = po.currency, po.amount, po.merchant_id
        ctx = BizContext(mid, po.order_type, po.sub_type, po.pay_org_no)
        legs = []
        if po.pay_type == "pay" and trade.trade_type == "guaranteed":
            legs = [
                debit(platform_transit(cur), amount),
                credit(guarantee_escrow(mid, cur), amount),
            ]
        elif po.pay_type == "pay":
            # read through this session: a second connection would wait on SQLite's write lock
            fee = fee_for(amount, s.get_one(Merchant, mid).fee_bps)
            legs = [
                debit(platform_transit(cur), amount),
                credit(merchant_payable(mid, cur), amount - fee),
                credit(fee_income(cur), fee),
            ]
        elif po.pay_type == "recharge":
            legs = [
                debit(platform_transit(cur), amount),
                credit(user_balance(trade.user_id, cur), amount),
            ]
        elif po.pay_type == "transfer":
            assert trade.payee_user_id is not None
            legs = [
                debit(platform_transit(cur), amount),
                credit(user_balance(trade.payee_user_id, cur), amount),
            ]
        if legs:
            self.core.ledger.post(
                s,
                biz_type="pay_complete",
                biz_key=str(po.id),
                ctx=ctx,
                currency=cur,
                legs=legs,
                trade_id=trade.id,
            )
        if not st.cas_status(
            s,
            Trade,
            trade.id,
            st.PAYING,
            st.PAID,
            st.TRADE_TRANSITIONS,
            paid_amount=amount,
            updated_at=now,
        ):
            raise WrongState(f"trade {trade.id} left paying while its pay order completed")
        notify_pay_order(s, self.core, po, "trade.paid")  # outbox row, same transaction

    def _fail(self, s: Session, po: PayOrder, error_code: str) -> None:
        """The order failed: release withdraw holds, reopen the trade, classify what was taken."""
        now = self.core.clock()
        if not st.cas_status(
            s,
            PayOrder,
            po.id,
            st.PROCESSING,
            st.FAILED,
            st.PAY_TRANSITIONS,
            finished_at=now,
            error_code=error_code,
        ):
            return
        st.cas_status(
            s, Trade, po.trade_id, st.PAYING, st.CREATED, st.TRADE_TRANSITIONS, updated_at=now
        )
        notify_pay_order(s, self.core, po, "trade.pay_failed", error_code)
        items = s.execute(select(PayItem).where(PayItem.pay_order_id == po.id)).scalars().all()
        taken = sum(
            i.settled_amount or 0
            for i in items
            if i.status == st.SUCCESS and po.pay_type != "withdraw"
        )
        if taken:
            record_exception(
                self.core,
                s,
                "partial_payment",
                biz_key=str(po.id),
                po=po,
                amount_taken=taken,
                detail=f"order failed ({error_code}) after {taken} was taken by other tools",
            )

    # -- channel results -------------------------------------------------------------------
    def on_channel_result(self, result: ChannelResult) -> str:
        """Settle a channel's answer for one item; safe to call any number of times.

        Returns what happened: ``settled``, ``failed``, ``duplicate`` (already in that
        state: ignored), or ``exception`` (recorded for a full refund).
        """
        with self.core.metrics.timed("callback", result.pay_org_no) as timed:
            outcome = self.core.db.run(lambda s: self._settle(s, result))
            timed.reason = outcome  # settled | failed | duplicate | exception
            return outcome

    def _settle(self, s: Session, r: ChannelResult) -> str:
        item = s.execute(
            select(PayItem).where(
                PayItem.pay_org_no == r.pay_org_no, PayItem.channel_txn_no == r.channel_txn_no
            )
        ).scalar_one_or_none()
        if item is None:
            raise PayOrderNotFound("no pay item for this channel transaction")
        po = lock_order(s, item.pay_order_id, self.core.db.is_postgres)
        s.refresh(item)
        ctx = BizContext(po.merchant_id, po.order_type, po.sub_type, po.pay_org_no)
        with use_context(ctx):
            if po.pay_type == "refund":
                return self.core.refunds.settle_item(s, po, item, r)
            return self._settle_pay_item(s, po, item, r, ctx)

    def _settle_pay_item(
        self, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
    ) -> str:
        now = self.core.clock()
        cur = po.currency
        withdraw = po.pay_type == "withdraw"
        success = r.status == st.SUCCESS
        if item.status != st.PROCESSING:
            if item.status == r.status and (not success or r.amount == item.settled_amount):
                return "duplicate"
            if item.status == st.FAILED and success and not withdraw:
                return self._late_success(s, po, item, r, ctx)
            record_exception(
                self.core,
                s,
                "other",
                biz_key=f"conflict:{item.id}",
                po=po,
                item=item,
                amount_taken=0,
                resolution="manual",
                detail=f"channel says {r.status} for an item already {item.status}",
            )
            return "exception"
        if success and (r.amount != item.amount or r.currency != cur):
            st.cas_status(
                s,
                PayItem,
                item.id,
                st.PROCESSING,
                st.FAILED,
                st.PAY_TRANSITIONS,
                finished_at=now,
                settled_amount=r.amount,
            )
            if not withdraw and r.currency == cur:
                self._take(s, po, item, r.amount, ctx)
            record_exception(
                self.core,
                s,
                "amount_mismatch",
                biz_key=str(item.id),
                po=po,
                item=item,
                amount_taken=r.amount if r.currency == cur else 0,
                detail=f"channel settled {r.amount} {r.currency}, order is {item.amount} {cur}",
            )
            self._fail(s, po, "amount_mismatch")
            return "exception"
        if success:
            st.cas_status(
                s,
                PayItem,
                item.id,
                st.PROCESSING,
                st.SUCCESS,
                st.PAY_TRANSITIONS,
                finished_at=now,
                settled_amount=r.amount,
            )
            if withdraw:
                self.core.ledger.post(
                    s,
                    biz_type="withdraw_out",
                    biz_key=str(item.id),
                    ctx=ctx,
                    currency=cur,
                    trade_id=po.trade_id,
                    legs=[
                        debit(platform_transit(cur), r.amount),
                        credit(channel_clearing(item.pay_org_no or ctx.pay_org_no, cur), r.amount),
                    ],
                )
            else:
                self._take(s, po, item, r.amount, ctx)
            if po.status == st.FAILED:  # another tool failed first: this money is a partial pay
                record_exception(
                    self.core,
                    s,
                    "partial_payment",
                    biz_key=f"late:{item.id}",
                    po=po,
                    item=item,
                    amount_taken=r.amount,
                    detail="a tool succeeded after its order had failed",
                )
                return "exception"
            states = (
                s.execute(select(PayItem.status).where(PayItem.pay_order_id == po.id))
                .scalars()
                .all()
            )
            if all(x == st.SUCCESS for x in states):
                self._complete(s, po)
            return "settled"
        st.cas_status(
            s, PayItem, item.id, st.PROCESSING, st.FAILED, st.PAY_TRANSITIONS, finished_at=now
        )
        if withdraw:
            self.core.ledger.post(
                s,
                biz_type="withdraw_release",
                biz_key=str(item.id),
                ctx=ctx,
                currency=cur,
                trade_id=po.trade_id,
                legs=[
                    debit(platform_transit(cur), item.amount),
                    credit(user_balance(po.user_id, cur), item.amount),
                ],
            )
        self._fail(s, po, "channel_failed")
        return "failed"

    def _take(self, s: Session, po: PayOrder, item: PayItem, amount: int, ctx: BizContext) -> None:
        """Record money the channel collected: channel clearing → platform transit."""
        cur = po.currency
        self.core.ledger.post(
            s,
            biz_type="pay_item",
            biz_key=str(item.id),
            ctx=ctx,
            currency=cur,
            trade_id=po.trade_id,
            legs=[
                debit(channel_clearing(item.pay_org_no or ctx.pay_org_no, cur), amount),
                credit(platform_transit(cur), amount),
            ],
        )

    def _late_success(
        self, s: Session, po: PayOrder, item: PayItem, r: ChannelResult, ctx: BizContext
    ) -> str:
        """The channel took money for an item we had already failed."""
        self._take(s, po, item, r.amount, ctx)
        paid_elsewhere = s.execute(
            select(PayOrder.id).where(
                PayOrder.trade_id == po.trade_id,
                PayOrder.status == st.SUCCESS,
                PayOrder.id != po.id,
            )
        ).first()
        kind = "duplicate_payment" if paid_elsewhere else "other"
        record_exception(
            self.core,
            s,
            kind,
            biz_key=f"late:{item.id}",
            po=po,
            item=item,
            amount_taken=r.amount,
            detail="channel success after the item failed",
        )
        return "exception"
