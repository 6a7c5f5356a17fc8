"""Pay core: pay a trade with one or more tools, and settle channel results.

Money taken from a payer first lands in the platform transit account; it moves
on to the merchant (or escrow, or the payee) only when the whole pay order has
succeeded. Money taken by a pay order that then fails stays in transit, is
recorded as a classified exception, and is refunded in full by compensation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, exists, insert, literal_column, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnClause

from . import status as st
from .channels import ChannelRequest
from .context import BizContext, use_context
from .db.schema import Merchant, PayItem, PayOrder, Trade
from .db.util import execute_core, row_values
from .errors import (
    DuplicateKey,
    IdempotencyConflict,
    InvalidPayTools,
    WrongState,
)
from .exceptions import record_exception
from .ledger import (
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
from .notify.outbox import merchant_notify_url, notify_pay_order
from .risk import RiskHold
from .settlement import ChannelSettlement
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


# hot statements are built once and run with parameters: building one costs as much CPU
# as the round trip
_PAY_ORDER_BY_NO = select(PayOrder).where(
    PayOrder.merchant_id == bindparam("mid"), PayOrder.out_pay_no == bindparam("no")
)
_ITEMS_OF = select(PayItem).where(PayItem.pay_order_id == bindparam("po_id"))
# the order's compare-and-set and the check that all its items succeeded, in one statement
_COMPLETE_IF_ALL_ITEMS_SUCCEEDED = (
    update(PayOrder)
    .where(
        PayOrder.id == bindparam("po_id"),
        PayOrder.status == st.PROCESSING,
        ~exists().where(PayItem.pay_order_id == bindparam("po_id"), PayItem.status != st.SUCCESS),
    )
    .values(status=st.SUCCESS, finished_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)

# what completion needs, returned by the trade's paying -> paid compare-and-set: the
# trade's fields for the postings, the merchant's fee and notify URL (read in this
# transaction). Spelled out: RETURNING renders the updated table's columns unqualified,
# and a bare merchant_id in the subquery would be the merchants row's own (any merchant's
# fee).
_TRADE_MERCHANT: ColumnClause[Any] = literal_column("trades.merchant_id")
_PAID_TRADE_FIELDS = (
    Trade.trade_type,
    Trade.user_id,
    Trade.payee_user_id,
    *(
        select(col).where(Merchant.merchant_id == _TRADE_MERCHANT).scalar_subquery().label(col.key)
        for col in (Merchant.fee_bps, Merchant.notify_url)
    ),
)
_INSERT_PAY_ORDER = insert(PayOrder)
_INSERT_PAY_ITEMS = insert(PayItem)


class PayService(ChannelSettlement):
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
            timed.pay_org = view.pay_org_no or timed.pay_org  # the trade's org by default
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
        if trade.status != st.CREATED:  # hopeless: never counted by risk. A concurrent
            # twin of this request may have won since the first replay check: its answer
            replay = self._replay(merchant_id, req.pay_no, fingerprint)
            if replay:
                return replay
            raise WrongState(f"trade is {trade.status}; it cannot be paid now")
        hold = self._preflight(trade, req, ctx)
        with (
            use_context(ctx),
            hold,  # the risk reservation goes back if this pay order is not begun
            self.core.trade_lock(trade.id, link="link.pay"),
        ):
            # no second replay check under the lock: a pay that won meanwhile shows up as
            # the trade's compare-and-set failing, or as its out_pay_no taken
            try:
                view, requests = self.core.db.run(
                    lambda s: self._begin(s, trade, req, ctx, fingerprint)
                )
            except (WrongState, DuplicateKey):
                replay = self._replay(merchant_id, req.pay_no, fingerprint)
                if replay is None:
                    raise
                return replay
        self._submit(requests)
        return view

    def _preflight(self, trade: TradeView, req: PayRequest, ctx: BizContext) -> RiskHold:
        """Checks before anything is written, for a trade that can be paid: risk (weak:
        falls back), and the channel's switch, limit and breaker (strong: fail fast,
        naming the channel).

        Returns the risk reservation (counted per merchant and user); the caller holds it
        around beginning the pay order, which gives it back if the order is not begun."""
        guard = self.core.guard
        labels = ctx.as_labels() if guard is not None else None
        hold = self.core.risk.decide(
            trade.merchant_id,
            trade.user_id,
            trade.amount,
            currency=trade.currency,
            trade_id=trade.id,
            guard=guard,
            caller="link.pay",
            labels=labels,
        )
        if guard is not None and any(t.tool == "channel" for t in req.tools):
            with hold:  # a channel that refuses gives the reservation back
                guard.admit(f"channel.{ctx.pay_org_no}", caller="link.pay", labels=labels)
        return hold

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
        with self.core.db.reading() as s:
            found = s.execute(_PAY_ORDER_BY_NO, {"mid": merchant_id, "no": pay_no})
            po = found.scalar_one_or_none()
            if po is None:
                return None
            if po.request_hash != fingerprint:
                raise IdempotencyConflict("out_pay_no was used with a different request")
            items = s.execute(_ITEMS_OF, {"po_id": po.id}).scalars().all()
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
        execute_core(s, _INSERT_PAY_ORDER, row_values(po))  # kept out of the session: a
        # plain INSERT costs half the CPU of a flush; items follow their order (foreign key)
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
        execute_core(s, _INSERT_PAY_ITEMS, [row_values(i) for i in items])
        cur = trade.currency
        requests: list[ChannelRequest] = []
        for item in items:
            balance = item.tool == "balance"
            if balance or pay_type == "withdraw":  # take (or hold, for a payout) the balance
                self.core.ledger.move(
                    s,
                    biz_type="pay_item" if balance else "withdraw_hold",
                    biz_key=str(item.id),
                    ctx=ctx,
                    currency=cur,
                    trade_id=trade.id,
                    source=user_balance(trade.merchant_id, trade.user_id, cur),
                    target=platform_transit(cur),
                    amount=item.amount,
                )
            if balance:
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
        if requests and len(requests) == len(items):
            return pay_order_view(po, items), requests  # nothing changed since the insert
        s.flush()  # balance items settled and the order maybe completed, by UPDATE: reload
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
        """If every item has succeeded: move the money on from transit, mark order and
        trade paid. A no-op while an item is still processing (or the order is final)."""
        now = self.core.clock()
        done = execute_core(s, _COMPLETE_IF_ALL_ITEMS_SUCCEEDED, {"po_id": po.id, "now": now})
        if done.rowcount != 1:
            return
        # the trade's compare-and-set returns what the postings need: no separate read
        trade = st.cas_status_returning(
            s,
            Trade,
            po.trade_id,
            st.PAYING,
            st.PAID,
            st.TRADE_TRANSITIONS,
            _PAID_TRADE_FIELDS,
            paid_amount=po.amount,
            updated_at=now,
        )
        if trade is None:
            raise WrongState(f"trade {po.trade_id} left paying while its pay order completed")
        cur, amount, mid = po.currency, po.amount, po.merchant_id
        ctx = BizContext(mid, po.order_type, po.sub_type, po.pay_org_no)
        legs = []
        if po.pay_type == "pay" and trade.trade_type == "guaranteed":
            legs = [
                debit(platform_transit(cur), amount),
                credit(guarantee_escrow(mid, cur), amount),
            ]
        elif po.pay_type == "pay":
            fee = fee_for(amount, trade.fee_bps)
            legs = [
                debit(platform_transit(cur), amount),
                credit(merchant_payable(mid, cur), amount - fee),
                credit(fee_income(cur), fee),
            ]
        elif po.pay_type == "recharge":
            legs = [
                debit(platform_transit(cur), amount),
                credit(user_balance(mid, trade.user_id, cur), amount),
            ]
        elif po.pay_type == "transfer":
            assert trade.payee_user_id is not None
            legs = [
                debit(platform_transit(cur), amount),
                credit(user_balance(mid, trade.payee_user_id, cur), amount),
            ]
        if legs:
            self.core.ledger.post(
                s,
                biz_type="pay_complete",
                biz_key=str(po.id),
                ctx=ctx,
                currency=cur,
                legs=legs,
                trade_id=po.trade_id,
            )
        # outbox row, same transaction
        notify_pay_order(s, self.core, po, "trade.paid", trade.notify_url)

    def _fail(self, s: Session, po: PayOrder, error_code: str, *, reopen: bool = True) -> None:
        """The order failed: reopen the trade (or close it, when what the channel did is
        unknown and a second pay could take the money twice), classify what was taken.
        Withdraw holds are released by the caller, which knows whether they may be."""
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
            s,
            Trade,
            po.trade_id,
            st.PAYING,
            st.CREATED if reopen else st.CLOSED,
            st.TRADE_TRANSITIONS,
            updated_at=now,
        )
        url = merchant_notify_url(s, po.merchant_id)
        notify_pay_order(s, self.core, po, "trade.pay_failed", url, error_code)
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
